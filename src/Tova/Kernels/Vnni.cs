using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tova.Kernels;

/// <summary>
/// The group kernels' integer sums by <c>vpdpbusd</c> (each 32-bit lane adds its four u8 × s8 products to an int32,
/// no int16 step; AVX-VNNI, or AVX512-VNNI with VL, which .NET reports as <see cref="AvxVnni"/>). A kernel with a
/// VNNI form keeps its form without it (<see cref="RowGroups.WithoutVnni"/>); both give the same integers, so no
/// result depends on which runs.
/// </summary>
internal static unsafe class Vnni
{
    /// <summary>True where the VNNI forms run.</summary>
    public static bool IsSupported => AvxVnni.IsSupported;

    /// <summary>Refuses a VNNI form on a machine without VNNI (nothing where it has it: the check folds away).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Require()
    {
        if (!AvxVnni.IsSupported) Refuse();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Refuse() => throw new PlatformNotSupportedException("this kernel form needs AVX-VNNI or AVX512-VNNI");

    /// <summary>acc + per 32-bit lane, Σ over the eight vectors' four u8 × s8 products against the four activations at x + 4i (u_i).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Sum8(Vector256<int> acc, Vector256<byte> u0, Vector256<byte> u1, Vector256<byte> u2, Vector256<byte> u3,
                                      Vector256<byte> u4, Vector256<byte> u5, Vector256<byte> u6, Vector256<byte> u7, sbyte* x)
    {
        // Two chains, so that consecutive vpdpbusd do not wait on each other.
        var a = AvxVnni.MultiplyWideningAndAdd(acc, u0, Q4_KRows8.Quad(x));
        var b = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u1, Q4_KRows8.Quad(x + 4));
        a = AvxVnni.MultiplyWideningAndAdd(a, u2, Q4_KRows8.Quad(x + 8));
        b = AvxVnni.MultiplyWideningAndAdd(b, u3, Q4_KRows8.Quad(x + 12));
        a = AvxVnni.MultiplyWideningAndAdd(a, u4, Q4_KRows8.Quad(x + 16));
        b = AvxVnni.MultiplyWideningAndAdd(b, u5, Q4_KRows8.Quad(x + 20));
        a = AvxVnni.MultiplyWideningAndAdd(a, u6, Q4_KRows8.Quad(x + 24));
        b = AvxVnni.MultiplyWideningAndAdd(b, u7, Q4_KRows8.Quad(x + 28));
        return a + b;
    }

    /// <summary>acc + per 32-bit lane, Σ of its four u8 × s8 products against the four activations at x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Sum1(Vector256<int> acc, Vector256<byte> u, sbyte* x) => AvxVnni.MultiplyWideningAndAdd(acc, u, Q4_KRows8.Quad(x));
}
