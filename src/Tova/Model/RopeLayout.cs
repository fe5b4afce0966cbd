using System.Runtime.InteropServices;
using Tova.Formats;

namespace Tova.Model;

/// <summary>
/// Row orders of the q and k projections. Tova (like llama2.c and GGUF's llama layout) rotates dimensions (2i, 2i+1)
/// of a head together; Hugging Face checkpoints (and GGUF's qwen2 layout, which llama.cpp runs with NEOX RoPE) rotate
/// dimension i with i + head_dim/2. Within each head, interleaved row 2i + s is half-split row s·head_dim/2 + i
/// (s ∈ {0, 1}): the permutation llama.cpp's converter applies to Llama q/k weights. Reordering the rows of q and k
/// (and their biases) by it gives identical attention scores, so the forward pass stays one RoPE.
/// </summary>
public static unsafe class RopeLayout
{
    /// <summary>
    /// The half-split row that interleaved row <paramref name="row"/> comes from. Only the first
    /// <paramref name="ropeDims"/> rows of each head rotate (partial RoPE); the rest stay where they are.
    /// </summary>
    public static int HalfSplitRow(int row, int headDim, int ropeDims = 0)
    {
        int rd = ropeDims == 0 ? headDim : ropeDims;
        int head = row / headDim, j = row % headDim;
        return j >= rd ? row : head * headDim + (j % 2) * (rd / 2) + j / 2;
    }

    /// <summary>The interleaved row that half-split row <paramref name="row"/> goes to.</summary>
    public static int InterleavedRow(int row, int headDim, int ropeDims = 0)
    {
        int rd = ropeDims == 0 ? headDim : ropeDims;
        int head = row / headDim, j = row % headDim, half = rd / 2;
        return j >= rd ? row : head * headDim + 2 * (j % half) + j / half;
    }

    /// <summary>
    /// A copy of a half-split matrix (rows at <paramref name="src"/>) in interleaved row order, in a pinned buffer the
    /// returned matrix owns. Any row-wise type works (rows are moved whole).
    /// </summary>
    public static WeightMatrix ToInterleaved(string name, GgmlType type, int rows, int columns, byte* src, int headDim, int ropeDims = 0)
    {
        long rowBytes = GgmlTypeInfo.RowBytes(type, columns);
        var buffer = GC.AllocateArray<byte>(checked((int)(rowBytes * rows)), pinned: true);
        fixed (byte* dst = buffer)
        {
            for (int r = 0; r < rows; r++)
                Buffer.MemoryCopy(src + HalfSplitRow(r, headDim, ropeDims) * rowBytes, dst + r * rowBytes, rowBytes, rowBytes);
        }
        return new WeightMatrix(name, type, rows, columns, buffer);
    }

    /// <summary>A half-split vector (a q or k bias) in interleaved order.</summary>
    public static float[] ToInterleaved(ReadOnlySpan<float> v, int headDim, int ropeDims = 0)
    {
        var r = new float[v.Length];
        for (int i = 0; i < r.Length; i++) r[i] = v[HalfSplitRow(i, headDim, ropeDims)];
        return r;
    }

    /// <summary>Interleaved rows (each <paramref name="columns"/> values) back in half-split order.</summary>
    public static float[] ToHalfSplit(ReadOnlySpan<float> rows, int columns, int headDim, int ropeDims = 0)
    {
        var r = new float[rows.Length];
        int n = rows.Length / columns;
        for (int i = 0; i < n; i++)
            rows.Slice(InterleavedRow(i, headDim, ropeDims) * columns, columns).CopyTo(r.AsSpan(i * columns, columns));
        return r;
    }
}
