using System.Globalization;
using System.Text;

namespace Tova.Templates;

/// <summary>Jinja2's built-in filters that chat templates use, and transformers' <c>tojson</c>.</summary>
internal static class Filters
{
    public static readonly HashSet<string> Names =
    [
        "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "forceescape",
        "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
        "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim", "unique",
        "upper", "wordcount", "batch", "groupby", "striptags", "truncate", "bool",
    ];

    private sealed class Args(Interpreter interp, string filter, List<object?> args, List<(string Name, object? Value)> kwargs, Node at)
    {
        public object? Get(int i, string name, object? def)
        {
            foreach (var (n, v) in kwargs) if (n == name) return v;
            return i >= 0 && i < args.Count ? args[i] : def;
        }

        public bool Has(int i, string name) => (i >= 0 && i < args.Count) || kwargs.Any(k => k.Name == name);

        public long Int(int i, string name, long def) => Get(i, name, def) switch
        {
            long l => l,
            bool b => b ? 1 : 0,
            var v => throw interp.Error(at, $"filter '{filter}': '{name}' must be an integer, not {Py.TypeName(v)}"),
        };

        public string? Str(int i, string name, string? def) => Get(i, name, def) switch
        {
            null => null,
            string s => s,
            var v => throw interp.Error(at, $"filter '{filter}': '{name}' must be a string, not {Py.TypeName(v)}"),
        };

        public bool Bool(int i, string name, bool def) => Py.Truthy(Get(i, name, def));
        public int Count => args.Count;
        public List<object?> Positional => args;
        public List<(string Name, object? Value)> Keywords => kwargs;
    }

    public static object? Apply(Interpreter interp, string name, object? value, List<object?> args, List<(string Name, object? Value)> kwargs, Node at)
    {
        var a = new Args(interp, name, args, kwargs, at);
        if (name is "safe") return value as Markup ?? new Markup(Py.Str(value));
        if (name is "e" or "escape") return value as Markup ?? new Markup(Markup.Escape(Py.Str(value)));
        if (name is "forceescape") return new Markup(Markup.Escape(Py.Str(value)));
        value = Py.Unwrap(value);
        // select, reject, selectattr, rejectattr and map yield nothing for a false value (None included), as Jinja2's do.
        if (name is "select" or "reject" or "selectattr" or "rejectattr" or "map" && !Py.Truthy(value)) return new PyGenerator([]);
        string S() => value switch
        {
            string s => s,
            _ => Py.Str(value),
        };
        switch (name)
        {
            case "trim": return Py.Strip(S(), a.Str(0, "chars", null), true, true);
            case "upper": return S().ToUpperInvariant();
            case "lower": return S().ToLowerInvariant();
            case "capitalize": { string s = S(); return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); }
            case "title": return Title(S());
            case "length" or "count": return (long)Builtins.Length(interp, value, at);
            case "string": return S();
            case "list": return interp.Iterate(value, at);
            case "first": { var l = interp.Iterate(value, at); return l.Count > 0 ? l[0] : new Undefined("No first item, sequence was empty."); }
            case "last":
            {
                if (value is PyGenerator) throw interp.Error(at, "'generator' object is not reversible");
                var l = interp.Iterate(value, at);
                return l.Count > 0 ? l[^1] : new Undefined("No last item, sequence was empty.");
            }
            case "reverse":
                if (value is string rs) return string.Concat(Enumerable.Reverse(Builtins.Chars(rs)).Cast<string>());
                { var l = interp.Iterate(value, at); l.Reverse(); return new PyGenerator(l); }
            case "join":
            {
                string sep = a.Str(0, "d", "") ?? "";
                var items = interp.Iterate(value, at);
                if (a.Get(1, "attribute", null) is { } attr) items = items.Select(x => AttrPath(interp, x, attr, at)).ToList();
                return string.Join(sep, items.Select(Py.Str));
            }
            case "default" or "d":
            {
                var def = a.Get(0, "default_value", "");
                bool boolean = a.Bool(1, "boolean", false);
                return value is Undefined || (boolean && !Py.Truthy(value)) ? def : value;
            }
            case "replace":
            {
                string old = a.Str(0, "old", null) ?? throw interp.Error(at, "replace needs 'old'");
                string @new = a.Str(1, "new", null) ?? throw interp.Error(at, "replace needs 'new'");
                return Builtins.Replace(S(), old, @new, a.Get(2, "count", null) is long c ? c : -1);
            }
            case "int" or "float" when value is Undefined u:
                throw interp.Error(at, u.Hint);
            case "int":
            {
                long def = a.Int(0, "default", 0);
                return value switch
                {
                    long l => l,
                    bool b => b ? 1L : 0L,
                    double d => double.IsFinite(d) ? (long)Math.Truncate(d) : def,
                    string s when long.TryParse(s.Trim().Replace("_", ""), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l) => l,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d) => (long)Math.Truncate(d),
                    _ => def,
                };
            }
            case "float":
            {
                var def = a.Get(0, "default", 0.0);
                return value switch
                {
                    long l => (double)l,
                    bool b => b ? 1.0 : 0.0,
                    double d => d,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
                    _ => def,
                };
            }
            case "bool": return Py.Truthy(value);
            case "abs":
                return value switch
                {
                    long l => (object)Math.Abs(l),
                    double d => Math.Abs(d),
                    bool b => b ? 1L : 0L,
                    _ => throw interp.Error(at, $"bad operand type for abs(): '{Py.TypeName(value)}'"),
                };
            case "round":
            {
                long precision = a.Int(0, "precision", 0);
                string method = a.Str(1, "method", "common") ?? "common";
                double d = Py.IsNumber(value) ? Py.ToDouble(value) : throw interp.Error(at, "round needs a number");
                double f = Math.Pow(10, precision);
                double r = method switch
                {
                    "ceil" => Math.Ceiling(d * f) / f,
                    "floor" => Math.Floor(d * f) / f,
                    _ => Py.Round(d, (int)Math.Clamp(precision, -400, 400)),
                };
                return r;
            }
            case "items":
                if (value is Undefined) return new List<object?>();
                if (value is not OrderedDictionary<object, object?> dict) throw interp.Error(at, $"can only get item pairs from a mapping, not {Py.TypeName(value)}");
                return new PyGenerator(dict.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])));
            case "dictsort":
            {
                if (value is not OrderedDictionary<object, object?> sorted) throw interp.Error(at, "dictsort needs a mapping");
                bool byValue = a.Str(1, "by", "key") == "value";
                bool reverse = a.Bool(2, "reverse", false);
                var pairs = sorted.Select(kv => (List<object?>)new PyTuple([kv.Key, kv.Value])).ToList();
                pairs.Sort((x, y) => Py.Compare(Fold(x[byValue ? 1 : 0]), Fold(y[byValue ? 1 : 0])) ?? 0);
                if (reverse) pairs.Reverse();
                return pairs.Cast<object?>().ToList();
            }
            case "tojson":
            {
                object? indentArg = a.Get(1, "indent", null);
                string? indent = indentArg switch
                {
                    null => null,
                    long n => new string(' ', (int)Math.Max(0, n)),
                    string s => s,
                    _ => throw interp.Error(at, "tojson: indent must be an integer or a string"),
                };
                string? item = null, key = null;
                if (a.Get(2, "separators", null) is List<object?> { Count: 2 } seps)
                {
                    item = seps[0] as string;
                    key = seps[1] as string;
                }
                try
                {
                    return PyJson.Dumps(value, indent, a.Bool(0, "ensure_ascii", false), item, key, a.Bool(3, "sort_keys", false));
                }
                catch (InvalidOperationException e)
                {
                    throw interp.Error(at, e.Message);
                }
            }
            case "map":
            {
                var items = interp.Iterate(value, at);
                if (a.Get(-1, "attribute", null) is { } attr)
                {
                    bool hasDef = a.Has(-1, "default");
                    var def = a.Get(-1, "default", null);
                    return new PyGenerator(items.Select(x =>
                    {
                        var v = AttrPath(interp, x, attr, at);
                        return hasDef && v is Undefined ? def : v;
                    }));
                }
                if (a.Count == 0) throw interp.Error(at, "map needs a filter name or attribute=");
                string filter = a.Positional[0] as string ?? throw interp.Error(at, "map: the filter name must be a string");
                if (!Names.Contains(filter)) throw interp.Error(at, $"no filter named '{filter}'");
                var rest = a.Positional.Skip(1).ToList();
                return new PyGenerator(items.Select(x => Apply(interp, filter, x, rest, a.Keywords, at)));
            }
            case "select" or "reject":
            {
                var items = interp.Iterate(value, at);
                bool want = name == "select";
                if (a.Count == 0) return new PyGenerator(items.Where(x => Py.Truthy(x) == want));
                string test = a.Positional[0] as string ?? throw interp.Error(at, $"{name}: the test name must be a string");
                var rest = a.Positional.Skip(1).ToList();
                return new PyGenerator(items.Where(x => Builtins.Test(interp, test, x, rest, at) == want));
            }
            case "selectattr" or "rejectattr":
            {
                var items = interp.Iterate(value, at);
                bool want = name == "selectattr";
                if (a.Count == 0) throw interp.Error(at, $"{name} needs an attribute name");
                var attr = a.Positional[0];
                if (a.Count == 1) return new PyGenerator(items.Where(x => Py.Truthy(AttrPath(interp, x, attr, at)) == want));
                string test = a.Positional[1] as string ?? throw interp.Error(at, $"{name}: the test name must be a string");
                var rest = a.Positional.Skip(2).ToList();
                return new PyGenerator(items.Where(x => Builtins.Test(interp, test, AttrPath(interp, x, attr, at), rest, at) == want));
            }
            case "unique":
            {
                var result = new List<object?>();
                var attr = a.Get(1, "attribute", null);
                foreach (var x in interp.Iterate(value, at))
                {
                    var k = Fold(attr is null ? x : AttrPath(interp, x, attr, at));
                    if (!result.Any(r => Py.Eq(Fold(attr is null ? r : AttrPath(interp, r, attr, at)), k))) result.Add(x);
                }
                return new PyGenerator(result);
            }
            case "sort":
            {
                var items = interp.Iterate(value, at);
                bool reverse = a.Bool(0, "reverse", false);
                bool caseSensitive = a.Bool(1, "case_sensitive", false);
                var attr = a.Get(2, "attribute", null);
                object? Key(object? x)
                {
                    var k = attr is null ? x : AttrPath(interp, x, attr, at);
                    return caseSensitive ? k : Fold(k);
                }
                var keyed = items.Select((x, i) => (x, k: Key(x), i)).ToList();
                keyed.Sort((p, q) =>
                {
                    int c = Py.Compare(p.k, q.k) ?? throw interp.Error(at, $"'<' not supported between instances of '{Py.TypeName(p.k)}' and '{Py.TypeName(q.k)}'");
                    if (reverse) c = -c;
                    return c != 0 ? c : p.i.CompareTo(q.i);
                });
                return keyed.Select(p => p.x).ToList();
            }
            case "sum":
            {
                var attr = a.Get(0, "attribute", null);
                object? total = a.Get(1, "start", 0L);
                foreach (var x in interp.Iterate(value, at))
                    total = Builtins.Binary(interp, "+", total, attr is null ? x : AttrPath(interp, x, attr, at), at);
                return total;
            }
            case "min" or "max":
            {
                var items = interp.Iterate(value, at);
                if (items.Count == 0) return new Undefined($"No aggregated item, sequence was empty.");
                bool caseSensitive = a.Bool(0, "case_sensitive", false);
                var attr = a.Get(1, "attribute", null);
                object? best = items[0];
                foreach (var x in items.Skip(1))
                {
                    object? kx = attr is null ? x : AttrPath(interp, x, attr, at), kb = attr is null ? best : AttrPath(interp, best, attr, at);
                    if (!caseSensitive) { kx = Fold(kx); kb = Fold(kb); }
                    int c = Py.Compare(kx, kb) ?? throw interp.Error(at, "values cannot be compared");
                    if (name == "min" ? c < 0 : c > 0) best = x;
                }
                return best;
            }
            case "attr":
                return Builtins.GetAttr(interp, value, a.Str(0, "name", "") ?? "", at);
            case "indent":
            {
                object? w = a.Get(0, "width", 4L);
                string pad = w is string ws ? ws : new string(' ', (int)(w is long wl ? wl : 4));
                bool first = a.Bool(1, "first", false), blank = a.Bool(2, "blank", false);
                string s = S();
                string nl = "\n";
                if (s.EndsWith('\n')) { s = s[..^1]; }
                else nl = "";
                var lines = s.Split('\n');
                var sb = new StringBuilder();
                for (int i = 0; i < lines.Length; i++)
                {
                    if (i > 0) sb.Append('\n');
                    bool indentLine = (i > 0 || first) && (blank || lines[i].Length > 0 && !lines[i].All(Py.IsSpace));
                    if (indentLine) sb.Append(pad);
                    sb.Append(lines[i]);
                }
                return sb.Append(nl).ToString();
            }
            case "center":
            {
                string s = S();
                int width = (int)a.Int(0, "width", 80);
                if (s.Length >= width) return s;
                int total = width - s.Length, left = total / 2 + (total & width & 1);
                return new string(' ', left) + s + new string(' ', total - left);
            }
            case "wordcount":
                return (long)System.Text.RegularExpressions.Regex.Count(S(), @"\w+");
            case "format":
                if (a.Keywords.Count > 0) return Formatting.Percent(interp, S(), Py.FromClr(a.Keywords.ToDictionary(k => k.Name, k => k.Value)), at);
                return Formatting.Percent(interp, S(), new PyTuple(a.Positional), at);
            case "striptags":
                return System.Text.RegularExpressions.Regex.Replace(System.Text.RegularExpressions.Regex.Replace(S(), "<[^>]*>", ""), @"\s+", " ").Trim();
            case "truncate":
            {
                string s = S();
                int length = (int)a.Int(0, "length", 255);
                bool killwords = a.Bool(1, "killwords", false);
                string end = a.Str(2, "end", "...") ?? "...";
                int leeway = (int)a.Int(3, "leeway", 5);
                if (s.Length <= length + leeway) return s;
                if (killwords) return s[..Math.Max(0, length - end.Length)] + end;
                string cut = s[..Math.Max(0, length - end.Length)];
                int sp = cut.LastIndexOf(' ');
                return (sp >= 0 ? cut[..sp] : cut) + end;
            }
            case "batch":
            {
                int size = (int)a.Int(0, "linecount", 1);
                if (size < 1) throw interp.Error(at, "batch size must be positive");
                var fill = a.Get(1, "fill_with", null);
                bool doFill = a.Has(1, "fill_with");
                var result = new List<object?>();
                List<object?>? cur = null;
                foreach (var x in interp.Iterate(value, at))
                {
                    if (cur is null || cur.Count == size) result.Add(cur = []);
                    cur.Add(x);
                }
                if (doFill && cur is not null) while (cur.Count < size) cur.Add(fill);
                return new PyGenerator(result);
            }
            case "groupby":
            {
                var attr = a.Get(0, "attribute", null) ?? throw interp.Error(at, "groupby needs an attribute");
                var groups = new List<(object? Key, List<object?> Items)>();
                foreach (var x in interp.Iterate(value, at))
                {
                    var k = AttrPath(interp, x, attr, at);
                    int gi = groups.FindIndex(g => Py.Eq(g.Key, k));
                    if (gi < 0) groups.Add((k, [x]));
                    else groups[gi].Items.Add(x);
                }
                groups.Sort((p, q) => Py.Compare(p.Key, q.Key) ?? 0);
                return groups.Select(g => (object?)new PyTuple([g.Key, g.Items])).ToList();
            }
            default:
                throw interp.Error(at, $"no filter named '{name}'");
        }
    }

    private static object? Fold(object? v) => v is string s ? s.ToLowerInvariant() : v;

    /// <summary>Jinja2's attribute getter: "a.b.0" looks up a, then b, then item 0.</summary>
    private static object? AttrPath(Interpreter interp, object? item, object? attr, Node at)
    {
        if (attr is long l) return Builtins.GetItem(interp, item, l, at);
        foreach (var part in Py.Str(attr).Split('.'))
        {
            object key = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? n : part;
            item = Builtins.GetItem(interp, item, key, at);
        }
        return item;
    }

    /// <summary>Jinja2's title filter: each word (after '-', white space or an opening bracket) capitalised.</summary>
    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool start = true;
        foreach (char c in s)
        {
            bool boundary = c is '-' or '(' or '{' or '[' or '<' || Py.IsSpace(c);
            if (boundary)
            {
                sb.Append(c);
                start = true;
                continue;
            }
            sb.Append(start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = false;
        }
        return sb.ToString();
    }
}
