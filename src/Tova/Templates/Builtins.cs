using System.Globalization;
using System.Text;

namespace Tova.Templates;

/// <summary>Attribute and item access, operators, tests, the methods of str/dict/list, and the global functions.</summary>
internal static class Builtins
{
    /// <summary>Jinja2's range limit in its sandbox.</summary>
    public const int MaxRange = 100_000;

    public static List<object?> Chars(string s)
    {
        var list = new List<object?>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                list.Add(s.Substring(i, 2));
                i++;
            }
            else list.Add(s[i].ToString());
        }
        return list;
    }

    public static int Length(Interpreter interp, object? v, Node at) => Py.Unwrap(v) switch
    {
        string s => s.Length - s.Count(char.IsLowSurrogate), // code points, as Python counts
        PyGenerator => throw interp.Error(at, "object of type 'generator' has no len()"),
        List<object?> l => l.Count,
        OrderedDictionary<object, object?> d => d.Count,
        Undefined => 0,
        Namespace ns => ns.Attributes.Count,
        _ => throw interp.Error(at, $"object of type '{Py.TypeName(v)}' has no len()"),
    };

    // ---- access ----

    public static object? GetAttr(Interpreter interp, object? obj, string name, Node at)
    {
        obj = Py.Unwrap(obj);
        switch (obj)
        {
            case Undefined u: throw interp.Error(at, u.Hint);
            case OrderedDictionary<object, object?> d:
                if (name is "items" or "keys" or "values" or "get") return Method(obj, name);
                return d.TryGetValue(name, out var v) ? v : new Undefined($"'dict object' has no attribute '{name}'");
            case Namespace ns:
                return ns.Attributes.TryGetValue(name, out var nv) ? nv : new Undefined($"'Namespace' object has no attribute '{name}'");
            case LoopInfo loop:
                return LoopAttr(interp, loop, name, at);
            case string:
                return StringMethods.Contains(name) ? Method(obj, name) : new Undefined($"'str object' has no attribute '{name}'");
            case List<object?>:
                if (name is "index" or "count") return Method(obj, name);
                if (name is "append" or "extend" or "insert" or "pop" or "remove" or "clear" or "sort" or "reverse")
                    return new BuiltinFunction(name, (i, _, _, a) => throw i.Error(a, $"access to attribute '{name}' of 'list' object is unsafe"));
                return new Undefined($"'list object' has no attribute '{name}'");
            default:
                return new Undefined($"'{Py.TypeName(obj)} object' has no attribute '{name}'");
        }
    }

    public static object? GetItem(Interpreter interp, object? obj, object? key, Node at)
    {
        obj = Py.Unwrap(obj);
        key = Py.Unwrap(key);
        switch (obj)
        {
            case Undefined u: throw interp.Error(at, u.Hint);
            case PyGenerator: return new Undefined("'generator' object is not subscriptable");
            case OrderedDictionary<object, object?> d:
                if (key is not null and not Undefined and not OrderedDictionary<object, object?> && (key is not List<object?> || key is PyTuple) && d.TryGetValue(key, out var v)) return v;
                return key is string ks ? GetAttr(interp, obj, ks, at) : new Undefined($"'dict object' has no attribute '{Py.Str(key)}'");
            case List<object?> l when key is long or bool:
            {
                long i = key is bool b ? (b ? 1 : 0) : (long)key;
                if (i < 0) i += l.Count;
                return i >= 0 && i < l.Count ? l[(int)i] : new Undefined($"'list object' has no element {Py.Str(key)}");
            }
            case string s when key is long or bool:
            {
                var chars = Chars(s);
                long i = key is bool b ? (b ? 1 : 0) : (long)key;
                if (i < 0) i += chars.Count;
                return i >= 0 && i < chars.Count ? chars[(int)i] : new Undefined($"'str object' has no element {Py.Str(key)}");
            }
            case Namespace or LoopInfo when key is string ks3:
                return GetAttr(interp, obj, ks3, at);
            default:
                return key is string k2 && obj is string or List<object?> ? GetAttr(interp, obj, k2, at) : new Undefined($"'{Py.TypeName(obj)} object' has no element {Py.Repr(key)}");
        }
    }

    public static object? Slice(Interpreter interp, object? obj, object? start, object? stop, object? step, Node at)
    {
        long? Idx(object? v, string what) => v switch
        {
            null => null,
            long l => l,
            bool b => b ? 1 : 0,
            _ => throw interp.Error(at, $"slice {what} must be an integer or none, not {Py.TypeName(v)}"),
        };
        long st = Idx(step, "step") ?? 1;
        if (st == 0) throw interp.Error(at, "slice step cannot be zero");
        obj = Py.Unwrap(obj);
        if (obj is PyGenerator) return new Undefined("'generator' object is not subscriptable");
        List<object?> items = obj switch
        {
            List<object?> l => l,
            string s => Chars(s),
            _ => throw interp.Error(at, $"'{Py.TypeName(obj)}' object is not subscriptable"),
        };
        long n = items.Count;
        long? a0 = Idx(start, "start"), b0 = Idx(stop, "stop");
        long a, b;
        if (st > 0)
        {
            a = a0 is null ? 0 : a0 < 0 ? Math.Max(0, a0.Value + n) : Math.Min(a0.Value, n);
            b = b0 is null ? n : b0 < 0 ? Math.Max(0, b0.Value + n) : Math.Min(b0.Value, n);
        }
        else
        {
            a = a0 is null ? n - 1 : a0 < 0 ? Math.Max(-1, a0.Value + n) : Math.Min(a0.Value, n - 1);
            b = b0 is null ? -1 : b0 < 0 ? Math.Max(-1, b0.Value + n) : Math.Min(b0.Value, n - 1);
        }
        var result = new List<object?>();
        if (st > 0) for (long i = a; i < b; i += st) result.Add(items[(int)i]);
        else for (long i = a; i > b; i += st) result.Add(items[(int)i]);
        return obj is string ? string.Concat(result.Cast<string>()) : result;
    }

    private static object? LoopAttr(Interpreter interp, LoopInfo loop, string name, Node at)
    {
        int i = loop.Index0, n = loop.Items.Count;
        return name switch
        {
            "index" => (long)(i + 1),
            "index0" => (long)i,
            "revindex" => (long)(n - i),
            "revindex0" => (long)(n - i - 1),
            "first" => i == 0,
            "last" => i == n - 1,
            "length" => (long)n,
            "depth" => (long)(loop.Depth0 + 1),
            "depth0" => (long)loop.Depth0,
            "previtem" => i > 0 ? loop.Items[i - 1] : new Undefined("there is no previous item"),
            "nextitem" => i < n - 1 ? loop.Items[i + 1] : new Undefined("there is no next item"),
            "cycle" => new BuiltinFunction("cycle", (ip, args, _, a) =>
                args.Count == 0 ? throw ip.Error(a, "no items for cycling given") : args[loop.Index0 % args.Count]),
            _ => new Undefined($"'LoopContext' object has no attribute '{name}'"),
        };
    }

    // ---- operators ----

    public static object? Binary(Interpreter interp, string op, object? l, object? r, Node at)
    {
        if (op == "~") return Py.Str(l) + Py.Str(r);
        if (op == "+" && (l is Markup || r is Markup) && l is string or Markup && r is string or Markup)
            return new Markup((l is Markup lm ? lm.Value : Markup.Escape((string)l!)) + (r is Markup rm ? rm.Value : Markup.Escape((string)r!)));
        l = Py.Unwrap(l);
        r = Py.Unwrap(r);
        if (op == "%" && Py.Unwrap(l) is string fmt0) return Formatting.Percent(interp, fmt0, Py.Unwrap(r), at);
        if (l is Undefined ul) throw interp.Error(at, ul.Hint);
        if (r is Undefined ur) throw interp.Error(at, ur.Hint);
        if (l is PyGenerator or PyRange || r is PyGenerator or PyRange) throw interp.Error(at, $"unsupported operand type(s) for {op}: '{Py.TypeName(l)}' and '{Py.TypeName(r)}'");
        bool nums = Py.IsNumber(l) && Py.IsNumber(r);
        bool ints = nums && l is long or bool && r is long or bool;
        switch (op)
        {
            case "+":
                if (ints) return checked(AsLong(l) + AsLong(r));
                if (nums) return Py.ToDouble(l) + Py.ToDouble(r);
                if (l is string ls && r is string rs) return ls + rs;
                if (l is List<object?> ll && r is List<object?> rl && (ll is PyTuple) == (rl is PyTuple))
                    return ll is PyTuple ? new PyTuple(ll.Concat(rl)) : ll.Concat(rl).ToList();
                break;
            case "-":
                if (ints) return checked(AsLong(l) - AsLong(r));
                if (nums) return Py.ToDouble(l) - Py.ToDouble(r);
                break;
            case "*":
                if (ints) return checked(AsLong(l) * AsLong(r));
                if (nums) return Py.ToDouble(l) * Py.ToDouble(r);
                if (l is string && r is long or bool) return Repeat(interp, l, AsLong(r), at);
                if (r is string && l is long or bool) return Repeat(interp, r, AsLong(l), at);
                if (l is List<object?> && r is long or bool) return Repeat(interp, l, AsLong(r), at);
                if (r is List<object?> && l is long or bool) return Repeat(interp, r, AsLong(l), at);
                break;
            case "/":
                if (nums)
                {
                    double d = Py.ToDouble(r);
                    if (d == 0) throw interp.Error(at, "division by zero");
                    return Py.ToDouble(l) / d;
                }
                break;
            case "//":
                if (ints)
                {
                    long b = AsLong(r);
                    if (b == 0) throw interp.Error(at, "integer division or modulo by zero");
                    long a = AsLong(l);
                    long q = a / b;
                    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
                    return q;
                }
                if (nums)
                {
                    double d = Py.ToDouble(r);
                    if (d == 0) throw interp.Error(at, "float floor division by zero");
                    return Math.Floor(Py.ToDouble(l) / d);
                }
                break;
            case "%":
                if (l is string fmt) return Formatting.Percent(interp, fmt, r, at);
                if (ints)
                {
                    long b = AsLong(r);
                    if (b == 0) throw interp.Error(at, "integer division or modulo by zero");
                    long m = AsLong(l) % b;
                    if (m != 0 && (m < 0) != (b < 0)) m += b;
                    return m;
                }
                if (nums)
                {
                    double b = Py.ToDouble(r);
                    if (b == 0) throw interp.Error(at, "float modulo");
                    double m = Py.ToDouble(l) % b;
                    if (m != 0 && (m < 0) != (b < 0)) m += b;
                    return m;
                }
                break;
            case "**":
                if (ints && AsLong(r) >= 0)
                {
                    long b = AsLong(l), e = AsLong(r), result = 1;
                    if (e > 64 && b is not (0 or 1 or -1)) throw interp.Error(at, "the power is too large");
                    for (long k = 0; k < e; k++) result = checked(result * b);
                    return result;
                }
                if (nums) return Math.Pow(Py.ToDouble(l), Py.ToDouble(r));
                break;
        }
        throw interp.Error(at, $"unsupported operand type(s) for {op}: '{Py.TypeName(l)}' and '{Py.TypeName(r)}'");
    }

    private static long AsLong(object? v) => v is bool b ? (b ? 1 : 0) : (long)v!;

    private static object Repeat(Interpreter interp, object? seq, long times, Node at)
    {
        if (times <= 0) return seq is string ? "" : new List<object?>();
        long size = (seq is string s ? s.Length : ((List<object?>)seq!).Count) * times;
        if (size > interp.Options.MaxOutputChars) throw interp.Error(at, $"the repeated sequence is larger than {interp.Options.MaxOutputChars} characters");
        if (seq is string str) return new StringBuilder().Insert(0, str, (int)times).ToString();
        var list = new List<object?>();
        for (long i = 0; i < times; i++) list.AddRange((List<object?>)seq!);
        return seq is PyTuple ? new PyTuple(list) : list;
    }

    public static bool Compare(Interpreter interp, string op, object? l, object? r, Node at)
    {
        switch (op)
        {
            case "==": return Py.Eq(l, r);
            case "!=": return !Py.Eq(l, r);
            case "in": return Contains(interp, r, l, at);
            case "notin": return !Contains(interp, r, l, at);
        }
        int c = Py.Compare(l, r) ?? throw interp.Error(at, $"'{op}' not supported between instances of '{Py.TypeName(l)}' and '{Py.TypeName(r)}'");
        return op switch { "<" => c < 0, "<=" => c <= 0, ">" => c > 0, _ => c >= 0 };
    }

    public static bool Contains(Interpreter interp, object? container, object? item, Node at) => Contains2(interp, Py.Unwrap(container), Py.Unwrap(item), at);

    private static bool Contains2(Interpreter interp, object? container, object? item, Node at) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal)
            : throw interp.Error(at, $"'in <string>' requires string as left operand, not {Py.TypeName(item)}"),
        List<object?> l => l.Any(x => Py.Eq(x, item)),
        OrderedDictionary<object, object?> d => item is List<object?> and not PyTuple || item is OrderedDictionary<object, object?>
            ? throw interp.Error(at, $"unhashable type: '{Py.TypeName(item)}'")
            : item is not null and not Undefined && d.ContainsKey(item),
        Undefined => false,
        Namespace ns => item is string k && ns.Attributes.ContainsKey(k),
        _ => throw interp.Error(at, $"argument of type '{Py.TypeName(container)}' is not iterable"),
    };

    // ---- tests ----

    public static readonly HashSet<string> TestNames =
    [
        "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string", "mapping",
        "iterable", "sequence", "callable", "sameas", "escaped", "lower", "upper", "odd", "even", "divisibleby",
        "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "filter", "test",
    ];

    public static bool Test(Interpreter interp, string name, object? v, List<object?> args, Node at)
    {
        object? Arg(int i) => i < args.Count ? args[i] : throw interp.Error(at, $"test '{name}' needs an argument");
        v = Py.Unwrap(v);
        switch (name)
        {
            case "defined": return v is not Undefined;
            case "undefined": return v is Undefined;
            case "none": return v is null;
            case "boolean": return v is bool;
            case "false": return v is false;
            case "true": return v is true;
            case "integer": return v is long;
            case "float": return v is double;
            case "number": return v is long or double or bool;
            case "string": return v is string;
            case "mapping": return v is OrderedDictionary<object, object?>;
            case "iterable": return v is string or List<object?> or OrderedDictionary<object, object?> or Undefined;
            case "sequence": return v is string or (List<object?> and not PyGenerator) or OrderedDictionary<object, object?> or Undefined;
            case "callable": return v is Callable or LoopInfo { Recursive: not null };
            case "sameas": return ReferenceEquals(v, Arg(0)) || (v is null && Arg(0) is null) || (v is bool b && Arg(0) is bool b2 && b == b2);
            case "escaped": return false;
            case "lower": return IsLower(Py.Str(v));
            case "upper": return IsLower(Py.Str(v).Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.IsLower(c) ? char.ToUpperInvariant(c) : c).ToArray().AsSpan().ToString());
            case "odd": return Py.Eq(Binary(interp, "%", v, 2L, at), 1L);
            case "even": return Py.Eq(Binary(interp, "%", v, 2L, at), 0L);
            case "divisibleby": return Py.Eq(Binary(interp, "%", v, Arg(0), at), 0L);
            case "eq" or "equalto" or "==": return Py.Eq(v, Arg(0));
            case "ne" or "!=": return !Py.Eq(v, Arg(0));
            case "lt" or "lessthan" or "<": return Compare(interp, "<", v, Arg(0), at);
            case "le" or "<=": return Compare(interp, "<=", v, Arg(0), at);
            case "gt" or "greaterthan" or ">": return Compare(interp, ">", v, Arg(0), at);
            case "ge" or ">=": return Compare(interp, ">=", v, Arg(0), at);
            case "in": return Contains(interp, Arg(0), v, at);
            case "filter": return v is string fs && Filters.Names.Contains(fs);
            case "test": return v is string ts && TestNames.Contains(ts);
            default: throw interp.Error(at, $"no test named '{name}'");
        }
    }

    /// <summary>Python's str.islower(): some cased character, and no upper-case one.</summary>
    private static bool IsLower(string s) => s.Any(char.IsLower) && !s.Any(char.IsUpper);

    // ---- methods ----

    private static readonly HashSet<string> StringMethods =
    [
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower", "title",
        "capitalize", "replace", "join", "find", "rfind", "index", "count", "format", "isdigit", "isalpha", "isalnum",
        "isspace", "islower", "isupper", "isnumeric", "zfill", "center", "ljust", "rjust", "partition", "rpartition", "swapcase",
        "removeprefix", "removesuffix", "casefold", "encode",
    ];

    private static BuiltinFunction Method(object? self, string name) =>
        new(name, (interp, args, kwargs, at) => CallMethod(interp, self, name, args, kwargs, at));

    private static object? CallMethod(Interpreter interp, object? self, string name, List<object?> args, List<(string Name, object? Value)> kwargs, Node at)
    {
        object? Arg(int i, string kw, object? def)
        {
            foreach (var (n, v) in kwargs) if (n == kw) return v;
            return i < args.Count ? args[i] : def;
        }
        string Str(int i, string kw)
        {
            var v = Arg(i, kw, null);
            return v as string ?? throw interp.Error(at, $"{name}() argument must be str, not {Py.TypeName(v)}");
        }
        switch (self)
        {
            case OrderedDictionary<object, object?> d:
                return name switch
                {
                    "items" => d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(),
                    "keys" => d.Keys.Cast<object?>().ToList(),
                    "values" => d.Values.ToList(),
                    _ => Arg(0, "key", null) is { } k && k is not Undefined && d.TryGetValue(k, out var gv) ? gv : Arg(1, "default", null),
                };
            case List<object?> l:
            {
                var x = Arg(0, "x", null);
                if (name == "count") return (long)l.Count(y => Py.Eq(x, y));
                int idx = l.FindIndex(y => Py.Eq(x, y));
                return idx >= 0 ? idx : throw interp.Error(at, $"{Py.Repr(x)} is not in list");
            }
            case string s:
                switch (name)
                {
                    case "strip": return Py.Strip(s, Arg(0, "chars", null) as string, true, true);
                    case "lstrip": return Py.Strip(s, Arg(0, "chars", null) as string, true, false);
                    case "rstrip": return Py.Strip(s, Arg(0, "chars", null) as string, false, true);
                    case "split": return Split(interp, s, Arg(0, "sep", null), Arg(1, "maxsplit", -1L), at, fromRight: false);
                    case "rsplit": return Split(interp, s, Arg(0, "sep", null), Arg(1, "maxsplit", -1L), at, fromRight: true);
                    case "splitlines": return s.Split('\n').Select(x => (object?)x.TrimEnd('\r')).ToList() is var lines && s.EndsWith('\n') ? lines.Take(lines.Count - 1).ToList() : lines;
                    case "startswith":
                    case "endswith":
                    {
                        var p = Arg(0, "prefix", null);
                        var candidates = p is List<object?> pl ? pl : [p];
                        foreach (var c in candidates)
                        {
                            if (c is not string cs) throw interp.Error(at, $"{name} first arg must be str or a tuple of str, not {Py.TypeName(c)}");
                            if (name == "startswith" ? s.StartsWith(cs, StringComparison.Ordinal) : s.EndsWith(cs, StringComparison.Ordinal)) return true;
                        }
                        return false;
                    }
                    case "upper": return s.ToUpperInvariant();
                    case "lower": return s.ToLowerInvariant();
                    case "casefold": return s.ToLowerInvariant();
                    case "swapcase": return string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)));
                    case "title": return PyTitle(s);
                    case "capitalize": return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
                    case "replace":
                    {
                        string old = Str(0, "old"), @new = Str(1, "new");
                        long count = Arg(2, "count", -1L) is long cnt ? cnt : -1;
                        return Replace(s, old, @new, count);
                    }
                    case "join":
                        return string.Join(s, interp.Iterate(Arg(0, "iterable", null), at).Select(x => x as string ?? throw interp.Error(at, $"sequence item: expected str instance, {Py.TypeName(x)} found")));
                    case "find": return (long)s.IndexOf(Str(0, "sub"), StringComparison.Ordinal);
                    case "rfind": return (long)s.LastIndexOf(Str(0, "sub"), StringComparison.Ordinal);
                    case "index":
                    {
                        int i = s.IndexOf(Str(0, "sub"), StringComparison.Ordinal);
                        return i >= 0 ? i : throw interp.Error(at, "substring not found");
                    }
                    case "count":
                    {
                        string sub = Str(0, "sub");
                        if (sub.Length == 0) return (long)s.Length + 1;
                        long n = 0;
                        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
                        return n;
                    }
                    case "format": return Formatting.StrFormat(interp, s, args, kwargs, at);
                    case "isdigit" or "isnumeric": return s.Length > 0 && s.All(char.IsDigit);
                    case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
                    case "isalnum": return s.Length > 0 && s.All(char.IsLetterOrDigit);
                    case "isspace": return s.Length > 0 && s.All(Py.IsSpace);
                    case "islower": return IsLower(s);
                    case "isupper": return s.Any(char.IsUpper) && !s.Any(char.IsLower);
                    case "zfill":
                    {
                        int w = (int)(Arg(0, "width", 0L) as long? ?? 0);
                        if (s.Length >= w) return s;
                        bool sign = s.Length > 0 && s[0] is '+' or '-';
                        return sign ? s[0] + s[1..].PadLeft(w - 1, '0') : s.PadLeft(w, '0');
                    }
                    case "center": return Center(s, (int)(Arg(0, "width", 0L) as long? ?? 0), (Arg(1, "fillchar", " ") as string ?? " ")[0]);
                    case "ljust": return s.PadRight((int)(Arg(0, "width", 0L) as long? ?? 0), (Arg(1, "fillchar", " ") as string ?? " ")[0]);
                    case "rjust": return s.PadLeft((int)(Arg(0, "width", 0L) as long? ?? 0), (Arg(1, "fillchar", " ") as string ?? " ")[0]);
                    case "partition" or "rpartition":
                    {
                        string sep = Str(0, "sep");
                        int i = name == "partition" ? s.IndexOf(sep, StringComparison.Ordinal) : s.LastIndexOf(sep, StringComparison.Ordinal);
                        if (i < 0) return name == "partition" ? new PyTuple([s, "", ""]) : new PyTuple(["", "", s]);
                        return new PyTuple([s[..i], sep, s[(i + sep.Length)..]]);
                    }
                    case "removeprefix": { string p = Str(0, "prefix"); return s.StartsWith(p, StringComparison.Ordinal) ? s[p.Length..] : s; }
                    case "removesuffix": { string p = Str(0, "suffix"); return p.Length > 0 && s.EndsWith(p, StringComparison.Ordinal) ? s[..^p.Length] : s; }
                    case "encode": return s;
                }
                break;
        }
        throw interp.Error(at, $"'{Py.TypeName(self)}' object has no method '{name}'");
    }

    public static string Replace(string s, string old, string @new, long count)
    {
        if (count < 0) return old.Length == 0 ? string.Concat(Chars(s).Select(c => @new + c)) + @new : s.Replace(old, @new, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int pos = 0;
        for (long n = 0; n < count; n++)
        {
            int i = old.Length == 0 ? (pos <= s.Length ? pos : -1) : s.IndexOf(old, pos, StringComparison.Ordinal);
            if (i < 0) break;
            sb.Append(s, pos, i - pos).Append(@new);
            if (old.Length == 0)
            {
                if (i < s.Length) sb.Append(s[i]);
                pos = i + 1;
            }
            else pos = i + old.Length;
        }
        if (pos <= s.Length) sb.Append(s, pos, s.Length - pos);
        return sb.ToString();
    }

    private static string Center(string s, int width, char fill)
    {
        if (s.Length >= width) return s;
        int total = width - s.Length;
        int left = total / 2 + (total & width & 1);
        return new string(fill, left) + s + new string(fill, total - left);
    }

    /// <summary>Python's str.title(): a cased character after an uncased one is upper-cased, the others lower-cased.</summary>
    public static string PyTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevCased = false;
        foreach (char c in s)
        {
            bool cased = char.IsUpper(c) || char.IsLower(c);
            sb.Append(cased ? (prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)) : c);
            prevCased = cased;
        }
        return sb.ToString();
    }

    private static List<object?> Split(Interpreter interp, string s, object? sep, object? maxsplitObj, Node at, bool fromRight)
    {
        long maxsplit = maxsplitObj is long m ? m : -1;
        var parts = new List<object?>();
        if (sep is null)
        {
            var words = new List<string>();
            int i = 0;
            while (i < s.Length)
            {
                while (i < s.Length && Py.IsSpace(s[i])) i++;
                if (i >= s.Length) break;
                if (maxsplit >= 0 && words.Count == maxsplit && !fromRight)
                {
                    words.Add(Py.Strip(s[i..], null, false, true));
                    break;
                }
                int j = i;
                while (j < s.Length && !Py.IsSpace(s[j])) j++;
                words.Add(s[i..j]);
                i = j;
            }
            if (fromRight && maxsplit >= 0 && words.Count > maxsplit + 1)
            {
                // rsplit: rejoin the leftmost words from the original text.
                var right = words.Skip(words.Count - (int)maxsplit).ToList();
                string head = s;
                foreach (var w in Enumerable.Reverse(right)) head = Py.Strip(head, null, false, true)[..^w.Length];
                words = [Py.Strip(head, null, true, true), .. right];
            }
            parts.AddRange(words);
            return parts;
        }
        if (sep is not string sp) throw interp.Error(at, $"must be str or None, not {Py.TypeName(sep)}");
        if (sp.Length == 0) throw interp.Error(at, "empty separator");
        var all = s.Split(sp);
        if (maxsplit < 0 || all.Length <= maxsplit + 1) return all.Cast<object?>().ToList();
        if (!fromRight)
        {
            parts.AddRange(all.Take((int)maxsplit));
            parts.Add(string.Join(sp, all.Skip((int)maxsplit)));
        }
        else
        {
            parts.Add(string.Join(sp, all.Take(all.Length - (int)maxsplit)));
            parts.AddRange(all.Skip(all.Length - (int)maxsplit));
        }
        return parts;
    }

    // ---- globals ----

    public static void AddGlobals(Frame globals, TemplateOptions options)
    {
        globals.Vars["range"] = new BuiltinFunction("range", (interp, args, _, at) =>
        {
            long Int(object? v) => v is long l ? l : v is bool b ? (b ? 1 : 0) : throw interp.Error(at, $"'{Py.TypeName(v)}' object cannot be interpreted as an integer");
            long start = 0, stop, step = 1;
            if (args.Count == 1) stop = Int(args[0]);
            else if (args.Count is 2 or 3)
            {
                start = Int(args[0]);
                stop = Int(args[1]);
                if (args.Count == 3) step = Int(args[2]);
            }
            else throw interp.Error(at, $"range expected 1 to 3 arguments, got {args.Count}");
            if (step == 0) throw interp.Error(at, "range() arg 3 must not be zero");
            long count = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0) : (start > stop ? (start - stop - step - 1) / -step : 0);
            if (count > MaxRange) throw interp.Error(at, $"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MaxRange}).");
            var list = new List<object?>((int)count);
            for (long i = 0; i < count; i++) list.Add(start + i * step);
            return new PyRange(start, stop, step, list);
        });
        globals.Vars["namespace"] = new BuiltinFunction("namespace", (interp, args, kwargs, at) =>
        {
            var ns = new Namespace();
            foreach (var a in args)
            {
                if (a is not OrderedDictionary<object, object?> d) throw interp.Error(at, "namespace() takes a dict or keyword arguments");
                foreach (var kv in d) ns.Attributes[Py.Str(kv.Key)] = kv.Value;
            }
            foreach (var (k, v) in kwargs) ns.Attributes[k] = v;
            return ns;
        });
        globals.Vars["dict"] = new BuiltinFunction("dict", (interp, args, kwargs, at) =>
        {
            var d = Py.NewDict();
            foreach (var a in args)
            {
                if (a is OrderedDictionary<object, object?> src) foreach (var kv in src) d[kv.Key] = kv.Value;
                else throw interp.Error(at, "dict() takes a dict or keyword arguments");
            }
            foreach (var (k, v) in kwargs) d[k] = v;
            return d;
        });
        globals.Vars["raise_exception"] = new BuiltinFunction("raise_exception", (interp, args, _, at) =>
            throw interp.Raised(at, args.Count > 0 ? Py.Str(args[0]) : "raise_exception() called"));
        var now = options.Now ?? (() => DateTime.Now);
        globals.Vars["strftime_now"] = new BuiltinFunction("strftime_now", (interp, args, _, at) =>
            args.Count == 1 && args[0] is string fmt ? Strftime.Format(now(), fmt) : throw interp.Error(at, "strftime_now(format) takes one string"));
    }
}
