using System.Runtime.InteropServices;

namespace Tova.Kernels;

/// <summary>
/// Reference (scalar) conversions between float and the storage types: F16, BF16, Q8_0, Q4_0 (dequantization of
/// every supported weight type: the k-quants in <see cref="KQuants"/>, the others in <see cref="BlockQuants"/>).
/// Block layouts follow ggml: Q8_0 = { f16 d; i8 q[32] } (34 bytes), x = d·q;
/// Q4_0 = { f16 d; u8 qs[16] } (18 bytes), element j in the low nibble of qs[j], element j+16 in the high nibble, x = d·(q − 8).
/// </summary>
public static class Quantization
{
    public const int QK = 32;
    public const int Q8_0BlockBytes = 34;
    public const int Q4_0BlockBytes = 18;

    public static ushort FloatToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000)
            return (ushort)((u >> 16) | 64); // quiet NaN
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    public static float Bf16ToFloat(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    public static byte[] ToF16(ReadOnlySpan<float> x)
    {
        var bytes = new byte[x.Length * 2];
        var h = MemoryMarshal.Cast<byte, Half>(bytes.AsSpan());
        for (int i = 0; i < x.Length; i++) h[i] = (Half)x[i];
        return bytes;
    }

    public static byte[] ToBf16(ReadOnlySpan<float> x)
    {
        var bytes = new byte[x.Length * 2];
        var h = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
        for (int i = 0; i < x.Length; i++) h[i] = FloatToBf16(x[i]);
        return bytes;
    }

    public static byte[] ToQ8_0(ReadOnlySpan<float> x)
    {
        if (x.Length % QK != 0) throw new ArgumentException($"Q8_0 needs a multiple of {QK} values, got {x.Length}");
        var bytes = new byte[x.Length / QK * Q8_0BlockBytes];
        QuantizeQ8_0(x, bytes);
        return bytes;
    }

    /// <summary>x (a multiple of 32 values) as Q8_0 blocks into dst, as ggml's reference quantizer.</summary>
    public static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        for (int b = 0; b < x.Length / QK; b++)
        {
            var src = x.Slice(b * QK, QK);
            float amax = 0;
            for (int j = 0; j < QK; j++) amax = MathF.Max(amax, MathF.Abs(src[j]));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            var blk = dst.Slice(b * Q8_0BlockBytes, Q8_0BlockBytes);
            MemoryMarshal.Write(blk, (Half)d);
            for (int j = 0; j < QK; j++)
                blk[2 + j] = (byte)(sbyte)MathF.Round(src[j] * id, MidpointRounding.AwayFromZero); // roundf, as ggml
        }
    }

    public static byte[] ToQ4_0(ReadOnlySpan<float> x)
    {
        if (x.Length % QK != 0) throw new ArgumentException($"Q4_0 needs a multiple of {QK} values, got {x.Length}");
        var bytes = new byte[x.Length / QK * Q4_0BlockBytes];
        QuantizeQ4_0(x, bytes);
        return bytes;
    }

    /// <summary>x (a multiple of 32 values) as Q4_0 blocks into dst, as ggml's reference quantizer.</summary>
    public static void QuantizeQ4_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        for (int b = 0; b < x.Length / QK; b++)
        {
            var src = x.Slice(b * QK, QK);
            float amax = 0, max = 0;
            for (int j = 0; j < QK; j++)
            {
                if (MathF.Abs(src[j]) > amax) { amax = MathF.Abs(src[j]); max = src[j]; }
            }
            float d = max / -8f;
            float id = d != 0 ? 1f / d : 0f;
            var blk = dst.Slice(b * Q4_0BlockBytes, Q4_0BlockBytes);
            MemoryMarshal.Write(blk, (Half)d);
            for (int j = 0; j < QK / 2; j++)
            {
                int q0 = Math.Min(15, (int)(sbyte)(src[j] * id + 8.5f));
                int q1 = Math.Min(15, (int)(sbyte)(src[j + QK / 2] * id + 8.5f));
                blk[2 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    /// <summary>Dequantizes <paramref name="dst"/>.Length values of a row stored as <paramref name="type"/>.</summary>
    public static void Dequantize(Formats.GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case Formats.GgmlType.F32:
                MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                break;
            case Formats.GgmlType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)h[i];
                break;
            }
            case Formats.GgmlType.BF16:
            {
                var h = MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = Bf16ToFloat(h[i]);
                break;
            }
            case Formats.GgmlType.Q8_0:
                for (int b = 0; b < dst.Length / QK; b++)
                {
                    var blk = src.Slice(b * Q8_0BlockBytes, Q8_0BlockBytes);
                    float d = (float)MemoryMarshal.Read<Half>(blk);
                    for (int j = 0; j < QK; j++) dst[b * QK + j] = d * (sbyte)blk[2 + j];
                }
                break;
            case Formats.GgmlType.Q4_0:
                for (int b = 0; b < dst.Length / QK; b++)
                {
                    var blk = src.Slice(b * Q4_0BlockBytes, Q4_0BlockBytes);
                    float d = (float)MemoryMarshal.Read<Half>(blk);
                    for (int j = 0; j < QK / 2; j++)
                    {
                        dst[b * QK + j] = d * ((blk[2 + j] & 0xF) - 8);
                        dst[b * QK + j + QK / 2] = d * ((blk[2 + j] >> 4) - 8);
                    }
                }
                break;
            case Formats.GgmlType.Q4_K:
            case Formats.GgmlType.Q5_K:
            case Formats.GgmlType.Q6_K:
                KQuants.Dequantize(type, src, dst);
                break;
            case Formats.GgmlType.Q4_1:
            case Formats.GgmlType.Q5_0:
            case Formats.GgmlType.Q5_1:
            case Formats.GgmlType.IQ4_NL:
            case Formats.GgmlType.Q2_K:
            case Formats.GgmlType.Q3_K:
            case Formats.GgmlType.IQ4_XS:
                BlockQuants.Dequantize(type, src, dst);
                break;
            default:
                throw new NotSupportedException($"dequantization of {type} is not supported");
        }
    }

    /// <summary>Encodes float values as <paramref name="type"/>.</summary>
    public static byte[] Encode(Formats.GgmlType type, ReadOnlySpan<float> x) => type switch
    {
        Formats.GgmlType.F32 => MemoryMarshal.AsBytes(x).ToArray(),
        Formats.GgmlType.F16 => ToF16(x),
        Formats.GgmlType.BF16 => ToBf16(x),
        Formats.GgmlType.Q8_0 => ToQ8_0(x),
        Formats.GgmlType.Q4_0 => ToQ4_0(x),
        _ => throw new NotSupportedException($"encoding as {type} is not supported"),
    };
}
