using System.Globalization;

namespace Tova.Formats;

/// <summary>GGUF metadata value types (numbers fixed by the format).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// One metadata value. Scalars are boxed .NET values (byte, sbyte, ushort, short, uint, int, float, bool, string,
/// ulong, long, double). Arrays are typed .NET arrays (byte[], int[], float[], string[], …) with
/// <see cref="ElementType"/> set; an array of arrays holds <see cref="GgufValue"/>[].
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType ElementType = GgufValueType.UInt8)
{
    public bool IsArray => Type == GgufValueType.Array;

    public int ArrayLength => Value is Array a ? a.Length : throw new InvalidOperationException("not an array");

    public long ToInt64() => Value switch
    {
        byte v => v,
        sbyte v => v,
        ushort v => v,
        short v => v,
        uint v => v,
        int v => v,
        ulong v => v <= long.MaxValue ? (long)v : throw new InvalidDataException($"value {v} does not fit a 64-bit integer"),
        long v => v,
        bool v => v ? 1 : 0,
        _ => throw new InvalidDataException($"expected an integer, found {Type}"),
    };

    public double ToDouble() => Value switch
    {
        float v => v,
        double v => v,
        _ => ToInt64(),
    };

    public static GgufValue Of(string s) => new(GgufValueType.String, s);
    public static GgufValue Of(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue Of(int v) => new(GgufValueType.Int32, v);
    public static GgufValue Of(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Of(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Of(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue Of(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);
    public static GgufValue Of(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue Of(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);

    /// <summary>A short human-readable rendering (arrays are summarised).</summary>
    public override string ToString()
    {
        if (Value is GgufValue[] nested)
            return $"[array of {nested.Length} arrays]";
        if (Value is Array a)
        {
            int show = Math.Min(a.Length, 8);
            var parts = new List<string>(show);
            for (int i = 0; i < show; i++)
                parts.Add(Format(a.GetValue(i)));
            return $"[{ElementType} × {a.Length}: {string.Join(", ", parts)}{(a.Length > show ? ", …" : "")}]";
        }
        return Format(Value);
    }

    private static string Format(object? v) => v switch
    {
        string s => s.Length > 80 ? $"\"{s[..77]}…\"" : $"\"{s}\"",
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        null => "null",
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };
}
