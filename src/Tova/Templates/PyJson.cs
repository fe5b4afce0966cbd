using System.Globalization;
using System.Text;

namespace Tova.Templates;

/// <summary>
/// Python's <c>json.dumps</c> as transformers' <c>tojson</c> filter calls it: keys in insertion order (or sorted),
/// separators ", " and ": " (or "," and ": " with an indent), non-ASCII kept unless ensure_ascii, floats as repr().
/// </summary>
internal static class PyJson
{
    public static string Dumps(object? value, string? indent = null, bool ensureAscii = false, string? itemSeparator = null, string? keySeparator = null, bool sortKeys = false)
    {
        var sb = new StringBuilder();
        var opts = (indent, ensureAscii, itemSeparator ?? (indent is null ? ", " : ","), keySeparator ?? ": ", sortKeys);
        Write(sb, value, opts, 0);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, object? v, (string? Indent, bool Ascii, string Item, string Key, bool Sort) o, int level)
    {
        if (level > 500) throw new InvalidOperationException("the value is nested too deeply to serialize");
        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Py.FloatRepr(d));
                break;
            case string s: WriteString(sb, s, o.Ascii); break;
            case Markup m: WriteString(sb, m.Value, o.Ascii); break;
            case PyGenerator: throw new InvalidOperationException("Object of type generator is not JSON serializable");
            case PyRange: throw new InvalidOperationException("Object of type range is not JSON serializable");
            case List<object?> list:
                if (list.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(o.Item);
                    NewLine(sb, o.Indent, level + 1);
                    Write(sb, list[i], o, level + 1);
                }
                NewLine(sb, o.Indent, level);
                sb.Append(']');
                break;
            case OrderedDictionary<object, object?> dict:
            {
                if (dict.Count == 0) { sb.Append("{}"); break; }
                IEnumerable<KeyValuePair<object, object?>> pairs = dict;
                if (o.Sort) pairs = dict.OrderBy(kv => KeyString(kv.Key), StringComparer.Ordinal);
                sb.Append('{');
                bool first = true;
                foreach (var kv in pairs)
                {
                    if (!first) sb.Append(o.Item);
                    first = false;
                    NewLine(sb, o.Indent, level + 1);
                    WriteString(sb, KeyString(kv.Key), o.Ascii);
                    sb.Append(o.Key);
                    Write(sb, kv.Value, o, level + 1);
                }
                NewLine(sb, o.Indent, level);
                sb.Append('}');
                break;
            }
            case Namespace:
            default:
                throw new InvalidOperationException($"Object of type {Py.TypeName(v)} is not JSON serializable");
        }
    }

    private static string KeyString(object key) => key switch
    {
        string s => s,
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => Py.FloatRepr(d),
        _ => throw new InvalidOperationException($"keys must be str, int, float, bool or None, not {Py.TypeName(key)}"),
    };

    private static void NewLine(StringBuilder sb, string? indent, int level)
    {
        if (indent is null) return;
        sb.Append('\n');
        for (int i = 0; i < level; i++) sb.Append(indent);
    }

    private static void WriteString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
