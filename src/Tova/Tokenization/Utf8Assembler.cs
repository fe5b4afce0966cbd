using System.Text;

namespace Tova.Tokenization;

/// <summary>
/// Turns token bytes into text one byte at a time, emitting only complete UTF-8 characters: an incomplete sequence
/// is held back until it completes; bytes that can never form a character come out as U+FFFD at once.
/// Shared by the tokenizers' streaming decoders.
/// </summary>
internal sealed class Utf8Assembler
{
    private readonly byte[] _pending = new byte[8];
    private int _count;
    private static readonly UTF8Encoding Lenient = new(false, false);

    /// <summary>True while bytes of an incomplete character are held back.</summary>
    public bool HasPending => _count > 0;

    public void Push(byte b, StringBuilder sb)
    {
        if (_count == 0 && b < 0x80) { sb.Append((char)b); return; }
        if (_count == 0 && (b & 0xC0) == 0x80) { sb.Append('\uFFFD'); return; } // stray continuation byte
        if (_count > 0 && (b & 0xC0) != 0x80) { Flush(sb); Push(b, sb); return; }
        if (_count == 1 && !ValidSecond(_pending[0], b))
        {
            // The lead byte can never complete (overlong, surrogate or beyond U+10FFFF): out now, not held back.
            sb.Append('\uFFFD');
            _count = 0;
            Push(b, sb);
            return;
        }
        _pending[_count++] = b;
        int need = Expected(_pending[0]);
        if (need == 0) { Flush(sb); return; }
        if (_count == need)
        {
            sb.Append(Lenient.GetString(_pending, 0, _count));
            _count = 0;
        }
    }

    /// <summary>Emits whatever is held back (as U+FFFD: it is incomplete).</summary>
    public void Flush(StringBuilder sb)
    {
        if (_count > 0) sb.Append(Lenient.GetString(_pending, 0, _count));
        _count = 0;
    }

    private static bool ValidSecond(byte lead, byte b) => lead switch
    {
        0xE0 => b >= 0xA0,
        0xED => b <= 0x9F,
        0xF0 => b >= 0x90,
        0xF4 => b <= 0x8F,
        _ => true,
    };

    private static int Expected(byte lead) => lead switch
    {
        >= 0xF0 and <= 0xF4 => 4,
        >= 0xE0 => lead <= 0xEF ? 3 : 0,
        >= 0xC2 => 2,
        _ => 0,
    };
}
