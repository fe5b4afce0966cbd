namespace Tova.Formats;

/// <summary>Tensor element types as numbered by ggml (the numbers are part of the GGUF format).</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// <summary>Block geometry of each ggml type: how many elements a block holds and how many bytes it takes.</summary>
public static class GgmlTypeInfo
{
    /// <summary>Returns (elements per block, bytes per block), or false for a type whose layout Tova does not know.</summary>
    public static bool TryGetBlock(GgmlType type, out int blockElements, out int blockBytes)
    {
        (blockElements, blockBytes) = type switch
        {
            GgmlType.F32 => (1, 4),
            GgmlType.F16 => (1, 2),
            GgmlType.BF16 => (1, 2),
            GgmlType.F64 => (1, 8),
            GgmlType.I8 => (1, 1),
            GgmlType.I16 => (1, 2),
            GgmlType.I32 => (1, 4),
            GgmlType.I64 => (1, 8),
            GgmlType.Q4_0 => (32, 18),
            GgmlType.Q4_1 => (32, 20),
            GgmlType.Q5_0 => (32, 22),
            GgmlType.Q5_1 => (32, 24),
            GgmlType.Q8_0 => (32, 34),
            GgmlType.Q8_1 => (32, 36),
            GgmlType.Q2_K => (256, 84),
            GgmlType.Q3_K => (256, 110),
            GgmlType.Q4_K => (256, 144),
            GgmlType.Q5_K => (256, 176),
            GgmlType.Q6_K => (256, 210),
            GgmlType.Q8_K => (256, 292),
            GgmlType.IQ4_NL => (32, 18),
            GgmlType.IQ4_XS => (256, 136),
            _ => (0, 0),
        };
        return blockElements > 0;
    }

    /// <summary>Bytes of one row of <paramref name="elements"/> values; throws if the row is not whole blocks.</summary>
    public static long RowBytes(GgmlType type, long elements)
    {
        if (!TryGetBlock(type, out int be, out int bb))
            throw new NotSupportedException($"tensor type {type} ({(uint)type}) has no known block layout");
        if (elements % be != 0)
            throw new InvalidDataException($"a row of {elements} elements is not a whole number of {type} blocks of {be}");
        return elements / be * bb;
    }

    /// <summary>The types whose rows the forward pass can multiply, in ggml's numbering order.</summary>
    public static IReadOnlyList<GgmlType> SupportedWeightTypes { get; } =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.BF16,
    ];

    /// <summary><see cref="SupportedWeightTypes"/> as text for error messages: "F32, F16, Q4_0, …".</summary>
    public static string SupportedWeightTypesText { get; } = string.Join(", ", SupportedWeightTypes);

    /// <summary>True for the types in <see cref="SupportedWeightTypes"/>.</summary>
    public static bool IsSupportedWeight(GgmlType type) => SupportedWeightTypes.Contains(type);
}
