using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Tova.Templates;

/// <summary>
/// Python's semantics for the values templates see: None (null), bool, int (long), float (double), str, list
/// (<see cref="List{T}"/>), dict (<see cref="OrderedDictionary{TKey,TValue}"/> in insertion order) — their str(),
/// repr(), truth, equality and ordering.
/// </summary>
internal static class Py
{
    public static OrderedDictionary<object, object?> NewDict() => new(KeyComparer.Instance);

    /// <summary>Dictionary keys compare as Python's do: 1 == 1.0 == True, strings by value.</summary>
    public sealed class KeyComparer : IEqualityComparer<object>
    {
        public static readonly KeyComparer Instance = new();
        public new bool Equals(object? x, object? y) => Eq(x, y);
        public int GetHashCode(object obj) => obj switch
        {
            bool b => b ? 1 : 0,
            long l => ((double)l).GetHashCode(),
            double d => d.GetHashCode(),
            string s => s.GetHashCode(StringComparison.Ordinal),
            PyTuple t => t.Aggregate(17, (h, x) => h * 31 + (x is null ? 0 : GetHashCode(x))),
            _ => obj.GetHashCode(),
        };
    }

    /// <summary>A .NET value (strings, numbers, booleans, lists, dictionaries, JSON) as a template value.</summary>
    public static object? FromClr(object? v) => v switch
    {
        null => null,
        string or bool or long or double or Undefined or Namespace or Callable => v,
        int i => (long)i,
        short s => (long)s,
        byte b => (long)b,
        uint u => (long)u,
        float f => (double)f,
        decimal m => (double)m,
        JsonElement e => FromJson(e),
        IDictionary<string, object?> d => DictFrom(d.Select(kv => new KeyValuePair<object, object?>(kv.Key, kv.Value))),
        OrderedDictionary<object, object?> d => DictFrom(d),
        IDictionary d => DictFrom(d.Keys.Cast<object>().Select(k => new KeyValuePair<object, object?>(FromClr(k)!, d[k]))),
        IEnumerable e => e.Cast<object?>().Select(FromClr).ToList(),
        _ => v.ToString(),
    };

    private static OrderedDictionary<object, object?> DictFrom(IEnumerable<KeyValuePair<object, object?>> pairs)
    {
        var d = NewDict();
        foreach (var kv in pairs) d[FromClr(kv.Key) ?? "None"] = FromClr(kv.Value);
        return d;
    }

    public static object? FromJson(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String: return e.GetString();
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.Number:
                if (e.TryGetInt64(out long l)) return l;
                return e.GetDouble();
            case JsonValueKind.Array: return e.EnumerateArray().Select(FromJson).ToList();
            case JsonValueKind.Object:
            {
                var d = NewDict();
                foreach (var p in e.EnumerateObject()) d[p.Name] = FromJson(p.Value);
                return d;
            }
            default: return null;
        }
    }

    /// <summary>A <see cref="Markup"/> as its text; any other value as it is.</summary>
    public static object? Unwrap(object? v) => v is Markup m ? m.Value : v;

    public static bool Truthy(object? v) => v switch
    {
        Markup m => m.Value.Length > 0,
        null or Undefined => false,
        PyGenerator => true,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        ICollection c => c.Count > 0,
        _ => true,
    };

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new InvalidCastException(),
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        Markup => "Markup",
        PyGenerator => "generator",
        PyTuple => "tuple",
        PyRange => "range",
        List<object?> => "list",
        OrderedDictionary<object, object?> => "dict",
        Namespace => "Namespace",
        Callable => "function",
        LoopInfo => "LoopContext",
        _ => v.GetType().Name,
    };

    public static bool Eq(object? a, object? b) => Eq(a, b, 0);

    /// <summary>How deep values may nest before printing or comparing them is an error (Python: a RecursionError).</summary>
    private const int MaxNesting = 500;

    private static void CheckNesting(int level)
    {
        if (level > MaxNesting) throw new InvalidOperationException($"the value is nested more than {MaxNesting} deep (does it contain itself?)");
    }

    private static bool Eq(object? a, object? b, int level)
    {
        a = Unwrap(a);
        b = Unwrap(b);
        CheckNesting(level);
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
            return a is long or bool && b is long or bool ? ToLong(a) == ToLong(b) : ToDouble(a) == ToDouble(b);
        switch (a)
        {
            case string sa: return b is string sb && sa == sb;
            case Undefined: return b is Undefined;
            case PyGenerator: return ReferenceEquals(a, b);
            case PyRange ra: return b is PyRange rb && Eq(new List<object?>(ra), new List<object?>(rb));
            case List<object?> la:
                if (ReferenceEquals(a, b)) return true;   // as Python's containers compare their elements: identity first
                if (b is not List<object?> lb || la.Count != lb.Count || (la is PyTuple) != (lb is PyTuple)) return false;
                for (int i = 0; i < la.Count; i++)
                    if (!Eq(la[i], lb[i], level + 1)) return false;
                return true;
            case OrderedDictionary<object, object?> da:
                if (ReferenceEquals(a, b)) return true;
                if (b is not OrderedDictionary<object, object?> db || da.Count != db.Count) return false;
                foreach (var kv in da)
                    if (!db.TryGetValue(kv.Key, out var v) || !Eq(kv.Value, v, level + 1)) return false;
                return true;
            default: return ReferenceEquals(a, b);
        }
    }

    private static long ToLong(object v) => v switch { long l => l, bool b => b ? 1 : 0, _ => throw new InvalidCastException() };

    /// <summary>Python's ordering (&lt; and friends): numbers, strings and lists; null when the types cannot be ordered.</summary>
    public static int? Compare(object? a, object? b)
    {
        a = Unwrap(a);
        b = Unwrap(b);
        if (a is PyRange or PyGenerator || b is PyRange or PyGenerator) return null;
        if (IsNumber(a) && IsNumber(b))
            return a is long or bool && b is long or bool ? ToLong(a!).CompareTo(ToLong(b!)) : ToDouble(a).CompareTo(ToDouble(b));
        if (a is string sa && b is string sb) return Math.Sign(string.CompareOrdinal(sa, sb));
        if (a is List<object?> la && b is List<object?> lb && (la is PyTuple) == (lb is PyTuple))
        {
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (Eq(la[i], lb[i])) continue;
                return Compare(la[i], lb[i]);
            }
            return la.Count.CompareTo(lb.Count);
        }
        return null;
    }

    /// <summary>Python's str().</summary>
    public static string Str(object? v) => v switch
    {
        null => "None",
        string s => s,
        Markup m => m.Value,
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        Undefined => "",
        _ => Repr(v),
    };

    /// <summary>Python's repr().</summary>
    public static string Repr(object? v) => Repr(v, 0);

    private static string Repr(object? v, int level)
    {
        CheckNesting(level);
        string Inner(object? e) => Repr(e, level + 1);
        switch (v)
        {
            case string s: return StrRepr(s);
            case PyGenerator: return "<generator object>";
            case PyRange r: return r.ToString();
            case PyTuple t: return t.Count == 1 ? "(" + Inner(t[0]) + ",)" : "(" + string.Join(", ", t.Select(Inner)) + ")";
            case List<object?> l: return "[" + string.Join(", ", l.Select(Inner)) + "]";
            case OrderedDictionary<object, object?> d: return "{" + string.Join(", ", d.Select(kv => Inner(kv.Key) + ": " + Inner(kv.Value))) + "}";
            case Namespace ns: return "<Namespace " + string.Join(", ", ns.Attributes.Select(kv => kv.Key + "=" + Inner(kv.Value))) + ">";
            case Callable c: return $"<function {c.Name}>";
            case LoopInfo: return "<LoopContext>";
            case Undefined: return "Undefined";
            default: return Str(v);
        }
    }

    public static string StrRepr(string s)
    {
        char q = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder(s.Length + 2).Append(q);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == q) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append(q).ToString();
    }

    /// <summary>Python's repr() of a float: the shortest digits that round-trip, fixed between 1e-4 and 1e16, else scientific.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        string r = d.ToString("E16", CultureInfo.InvariantCulture);
        // Shortest round-trip digits: try increasing precision.
        for (int p = 0; p <= 16; p++)
        {
            string t = d.ToString("E" + p, CultureInfo.InvariantCulture);
            if (double.Parse(t, CultureInfo.InvariantCulture) == d) { r = t; break; }
        }
        bool neg = r[0] == '-';
        if (neg) r = r[1..];
        int e = r.IndexOf('E');
        string digits = r[..e].Replace(".", "");
        int exp = int.Parse(r[(e + 1)..], CultureInfo.InvariantCulture);
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        string body;
        if (exp is >= -4 and < 16)
        {
            if (exp >= 0)
            {
                string intPart = digits.Length > exp + 1 ? digits[..(exp + 1)] : digits.PadRight(exp + 1, '0');
                string frac = digits.Length > exp + 1 ? digits[(exp + 1)..] : "0";
                body = intPart + "." + frac;
            }
            else body = "0." + new string('0', -exp - 1) + digits;
        }
        else
        {
            string mant = digits.Length > 1 ? digits[0] + "." + digits[1..] : digits;
            body = mant + "e" + (exp < 0 ? "-" : "+") + Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture);
        }
        return neg ? "-" + body : body;
    }

    /// <summary>
    /// Python's round(x, n) for a float: the exact binary value rounded to n decimals, ties to even, read back as the
    /// nearest double (so round(2.675, 2) is 2.67: 2.675 is stored just below it).
    /// </summary>
    public static double Round(double x, int n)
    {
        if (!double.IsFinite(x) || x == 0) return x;
        long bits = BitConverter.DoubleToInt64Bits(x);
        bool negative = bits < 0;
        int exp = (int)((bits >> 52) & 0x7FF);
        long frac = bits & 0xFFFFFFFFFFFFFL;
        System.Numerics.BigInteger m = exp == 0 ? frac : frac | (1L << 52);
        int e = (exp == 0 ? 1 : exp) - 1075; // x = m · 2^e
        System.Numerics.BigInteger num = m, den = 1;
        if (e >= 0) num <<= e;
        else den <<= -e;
        if (n >= 0) num *= System.Numerics.BigInteger.Pow(10, n);
        else den *= System.Numerics.BigInteger.Pow(10, -n);
        var q = System.Numerics.BigInteger.DivRem(num, den, out var r);
        int c = (r * 2).CompareTo(den);
        if (c > 0 || (c == 0 && !q.IsEven)) q += 1;
        double result = double.Parse(q.ToString(CultureInfo.InvariantCulture) + "E" + (-n).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return negative ? -result : result;
    }

    /// <summary>Python's str.isspace() for one character.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is '\x1c' or '\x1d' or '\x1e' or '\x1f';

    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int a = 0, b = s.Length;
        Func<char, bool> strip = chars is null ? IsSpace : c => chars.Contains(c);
        if (left) while (a < b && strip(s[a])) a++;
        if (right) while (b > a && strip(s[b - 1])) b--;
        return s[a..b];
    }
}
