using System.Globalization;
using System.Text;

namespace Tova.Templates;

/// <summary>
/// Splits a template into text and tag tokens as Jinja2's lexer does: newlines normalised to \n, the single trailing
/// newline dropped (unless kept), <c>-</c> strips the white space beside a tag, <c>trim_blocks</c> removes the newline
/// after a block or comment tag, <c>lstrip_blocks</c> removes the spaces and tabs before one at the start of a line
/// (<c>+</c> turns either off for that tag), and <c>{% raw %}</c> bodies stay text.
/// </summary>
internal sealed class Lexer
{
    private readonly string _src;
    private readonly string _name;
    private readonly TemplateOptions _options;
    private readonly List<int> _lineStarts = [0];
    private readonly List<Token> _tokens = [];
    private int _pos;

    private Lexer(string source, string name, TemplateOptions options)
    {
        string s = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (!options.KeepTrailingNewline && s.EndsWith('\n')) s = s[..^1];
        _src = s;
        _name = name;
        _options = options;
        for (int i = 0; i < s.Length; i++)
            if (s[i] == '\n') _lineStarts.Add(i + 1);
    }

    public static List<Token> Tokenize(string source, string name, TemplateOptions options)
    {
        var lexer = new Lexer(source, name, options);
        lexer.Run();
        return lexer._tokens;
    }

    private (int Line, int Column) Where(int offset)
    {
        int idx = _lineStarts.BinarySearch(offset);
        if (idx < 0) idx = ~idx - 1;
        return (idx + 1, offset - _lineStarts[idx] + 1);
    }

    private TemplateException Error(int offset, string detail)
    {
        var (line, col) = Where(offset);
        return new TemplateException(TemplateErrorKind.Syntax, _name, line, col, detail);
    }

    private void Add(TokenKind kind, string value, int offset)
    {
        var (line, col) = Where(offset);
        _tokens.Add(new Token(kind, value, line, col));
    }

    private void Run()
    {
        bool lineStarting = true;
        while (_pos < _src.Length)
        {
            int tag = FindTagStart(_pos);
            string text = _src[_pos..(tag < 0 ? _src.Length : tag)];
            int textStart = _pos;
            if (tag < 0)
            {
                if (text.Length > 0) Add(TokenKind.Text, text, textStart);
                _pos = _src.Length;
                break;
            }
            char kind = _src[tag + 1];
            char sign = tag + 2 < _src.Length && _src[tag + 2] is '-' or '+' ? _src[tag + 2] : '\0';
            if (sign == '-') text = text.TrimEnd();
            else if (sign != '+' && _options.LstripBlocks && kind != '{')
            {
                int lPos = text.LastIndexOf('\n') + 1;
                if ((lPos > 0 || lineStarting) && IsAllWhite(text, lPos)) text = text[..lPos];
            }
            if (text.Length > 0) Add(TokenKind.Text, text, textStart);
            _pos = tag + 2 + (sign != '\0' ? 1 : 0);
            switch (kind)
            {
                case '#':
                    lineStarting = LexComment(tag);
                    break;
                case '{':
                    Add(TokenKind.VariableBegin, "{{", tag);
                    lineStarting = LexInside(tag, '}');
                    break;
                default:
                    if (TryRaw(tag, out lineStarting)) break;
                    Add(TokenKind.BlockBegin, "{%", tag);
                    lineStarting = LexInside(tag, '%');
                    break;
            }
        }
        Add(TokenKind.Eof, "", _src.Length);
    }

    private static bool IsAllWhite(string s, int from)
    {
        for (int i = from; i < s.Length; i++)
            if (!char.IsWhiteSpace(s[i])) return false;
        return true;
    }

    private int FindTagStart(int from)
    {
        for (int i = from; i + 1 < _src.Length; i++)
            if (_src[i] == '{' && _src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>After an end delimiter: '-' ate the white space that follows; otherwise trim_blocks eats one newline (block tags).</summary>
    private bool AfterEnd(bool stripAfter, bool keep, bool block)
    {
        int start = _pos;
        if (stripAfter)
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos])) _pos++;
        else if (block && !keep && _options.TrimBlocks && _pos < _src.Length && _src[_pos] == '\n') _pos++;
        return _pos > start ? _src[_pos - 1] == '\n' : false;
    }

    private bool LexComment(int tag)
    {
        int end = _src.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (end < 0) throw Error(tag, "the comment is not closed ('#}' missing)");
        bool strip = end > _pos && _src[end - 1] == '-';
        bool keep = end > _pos && _src[end - 1] == '+';
        _pos = end + 2;
        return AfterEnd(strip, keep, block: true);
    }

    /// <summary>{% raw %}…{% endraw %}: the body is text.</summary>
    private bool TryRaw(int tag, out bool lineStarting)
    {
        lineStarting = false;
        int p = _pos;
        while (p < _src.Length && char.IsWhiteSpace(_src[p])) p++;
        if (string.CompareOrdinal(_src, p, "raw", 0, 3) != 0) return false;
        p += 3;
        while (p < _src.Length && char.IsWhiteSpace(_src[p])) p++;
        bool strip = p < _src.Length && _src[p] == '-';
        if (p < _src.Length && _src[p] is '-' or '+') p++;
        if (string.CompareOrdinal(_src, p, "%}", 0, 2) != 0) return false;
        _pos = p + 2;
        AfterEnd(strip, false, block: false);
        int search = _pos;
        while (true)
        {
            int open = _src.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw Error(tag, "'raw' is not closed ('{% endraw %}' missing)");
            int q = open + 2;
            char sign = q < _src.Length && _src[q] is '-' or '+' ? _src[q] : '\0';
            if (sign != '\0') q++;
            while (q < _src.Length && char.IsWhiteSpace(_src[q])) q++;
            if (string.CompareOrdinal(_src, q, "endraw", 0, 6) != 0) { search = open + 2; continue; }
            q += 6;
            while (q < _src.Length && char.IsWhiteSpace(_src[q])) q++;
            bool stripEnd = q < _src.Length && _src[q] == '-';
            bool keepEnd = q < _src.Length && _src[q] == '+';
            if (q < _src.Length && _src[q] is '-' or '+') q++;
            if (string.CompareOrdinal(_src, q, "%}", 0, 2) != 0) { search = open + 2; continue; }
            string body = _src[_pos..open];
            if (sign == '-') body = body.TrimEnd();
            if (body.Length > 0) Add(TokenKind.Text, body, _pos);
            _pos = q + 2;
            lineStarting = AfterEnd(stripEnd, keepEnd, block: true);
            return true;
        }
    }

    /// <summary>Tokens of a {{ }} (end '}') or {% %} (end '%') tag, up to and including its end.</summary>
    private bool LexInside(int tag, char end)
    {
        int depth = 0;
        while (true)
        {
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos])) _pos++;
            if (_pos >= _src.Length)
                throw Error(tag, end == '}' ? "the expression is not closed ('}}' missing)" : "the tag is not closed ('%}' missing)");
            char c = _src[_pos];
            if (depth == 0)
            {
                bool minus = c == '-' && At(_pos + 1, end) && At(_pos + 2, '}');
                bool plus = c == '+' && end == '%' && At(_pos + 1, end) && At(_pos + 2, '}');
                if (minus || plus || (c == end && At(_pos + 1, '}')))
                {
                    Add(end == '}' ? TokenKind.VariableEnd : TokenKind.BlockEnd, end + "}", _pos);
                    _pos += minus || plus ? 3 : 2;
                    return AfterEnd(minus, plus, block: end == '%');
                }
            }
            int start = _pos;
            if (char.IsAsciiLetter(c) || c == '_')
            {
                while (_pos < _src.Length && (char.IsAsciiLetterOrDigit(_src[_pos]) || _src[_pos] == '_')) _pos++;
                Add(TokenKind.Name, _src[start.._pos], start);
            }
            else if (char.IsAsciiDigit(c))
                LexNumber(start);
            else if (c is '\'' or '"')
                Add(TokenKind.String, LexString(start), start);
            else
            {
                string op = Operator(c);
                if (op.Length == 0) throw Error(start, $"unexpected character '{c}'");
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}")
                {
                    if (depth == 0) throw Error(start, $"unexpected '{op}'");
                    depth--;
                }
                _pos += op.Length;
                Add(TokenKind.Operator, op, start);
            }
        }
    }

    private bool At(int i, char c) => i < _src.Length && _src[i] == c;

    private string Operator(char c)
    {
        if (_pos + 1 < _src.Length)
        {
            string two = _src.Substring(_pos, 2);
            if (two is "//" or "**" or "==" or "!=" or "<=" or ">=") return two;
        }
        return c is '+' or '-' or '/' or '*' or '%' or '~' or '[' or ']' or '(' or ')' or '{' or '}' or '<' or '>' or '=' or '.' or ':' or '|' or ',' or ';'
            ? c.ToString() : "";
    }

    private void LexNumber(int start)
    {
        bool afterDot = _tokens.Count > 0 && _tokens[^1].IsOp(".");
        Digits();
        bool isFloat = false;
        if (!afterDot && _pos + 1 < _src.Length && _src[_pos] == '.' && char.IsAsciiDigit(_src[_pos + 1]))
        {
            _pos++;
            Digits();
            isFloat = true;
        }
        if (!afterDot && _pos < _src.Length && _src[_pos] is 'e' or 'E')
        {
            int save = _pos;
            _pos++;
            if (_pos < _src.Length && _src[_pos] is '+' or '-') _pos++;
            if (_pos < _src.Length && char.IsAsciiDigit(_src[_pos]))
            {
                Digits();
                isFloat = true;
            }
            else _pos = save;
        }
        string text = _src[start.._pos].Replace("_", "");
        if (isFloat) Add(TokenKind.Float, text, start);
        else Add(TokenKind.Integer, text, start);
    }

    private void Digits()
    {
        while (_pos < _src.Length && (char.IsAsciiDigit(_src[_pos]) || (_src[_pos] == '_' && _pos + 1 < _src.Length && char.IsAsciiDigit(_src[_pos + 1])))) _pos++;
    }

    /// <summary>A quoted string, unescaped as Python's "unicode-escape" codec does (unknown escapes stay as they are).</summary>
    private string LexString(int start)
    {
        char quote = _src[start];
        int p = start + 1;
        var sb = new StringBuilder();
        while (true)
        {
            if (p >= _src.Length) throw Error(start, "the string is not closed");
            char c = _src[p];
            if (c == quote) break;
            if (c != '\\' || p + 1 >= _src.Length)
            {
                sb.Append(c);
                p++;
                continue;
            }
            char e = _src[p + 1];
            p += 2;
            switch (e)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case 'x': p = Hex(sb, p, 2, start); break;
                case 'u': p = Hex(sb, p, 4, start); break;
                case 'U': p = Hex(sb, p, 8, start); break;
                case >= '0' and <= '7':
                {
                    int v = e - '0', n = 1;
                    while (n < 3 && p < _src.Length && _src[p] is >= '0' and <= '7') { v = v * 8 + (_src[p] - '0'); p++; n++; }
                    sb.Append((char)v);
                    break;
                }
                default: sb.Append('\\').Append(e); break;
            }
        }
        _pos = p + 1;
        return sb.ToString();
    }

    private int Hex(StringBuilder sb, int p, int digits, int start)
    {
        if (p + digits > _src.Length || !int.TryParse(_src.AsSpan(p, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int v))
            throw Error(start, $"truncated \\{(digits == 2 ? 'x' : digits == 4 ? 'u' : 'U')} escape in a string");
        if (v > 0x10FFFF) throw Error(start, "illegal Unicode character in a string escape");
        sb.Append(char.ConvertFromUtf32(v is >= 0xD800 and <= 0xDFFF ? 0xFFFD : v));
        return p + digits;
    }
}
