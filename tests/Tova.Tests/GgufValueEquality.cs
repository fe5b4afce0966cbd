using Tova.Formats;

namespace Tova.Tests;

/// <summary>Deep equality of GGUF metadata values (arrays compared element by element, floats bit for bit).</summary>
public static class GgufValueEquality
{
    public static bool Equal(GgufValue a, GgufValue b)
    {
        if (a.Type != b.Type) return false;
        if (!a.IsArray) return ScalarEqual(a.Value, b.Value);
        if (a.ElementType != b.ElementType) return false;
        var x = (Array)a.Value;
        var y = (Array)b.Value;
        if (x.Length != y.Length || x.GetType() != y.GetType()) return false;
        for (int i = 0; i < x.Length; i++)
        {
            object? u = x.GetValue(i), v = y.GetValue(i);
            if (u is GgufValue gu && v is GgufValue gv) { if (!Equal(gu, gv)) return false; }
            else if (!ScalarEqual(u, v)) return false;
        }
        return true;
    }

    private static bool ScalarEqual(object? a, object? b) => (a, b) switch
    {
        (float x, float y) => BitConverter.SingleToUInt32Bits(x) == BitConverter.SingleToUInt32Bits(y),
        (double x, double y) => BitConverter.DoubleToUInt64Bits(x) == BitConverter.DoubleToUInt64Bits(y),
        _ => Equals(a, b),
    };
}
