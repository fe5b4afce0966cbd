using System.Globalization;
using System.Text;

namespace Tova.Templates;

/// <summary>Python's <c>"%s" % x</c> and <c>"{}".format(x)</c> for the conversions templates use (%s %r %d %i %f %%, {} {0} {name}).</summary>
internal static class Formatting
{
    public static string Percent(Interpreter interp, string fmt, object? arg, Node at)
    {
        // Only a tuple spreads over the conversions; a dict (or, as Python has it, any other indexable but a string)
        // may leave values unused.
        List<object?> args = arg is PyTuple t ? t : [arg];
        var dict = arg as OrderedDictionary<object, object?>;
        bool mappingLike = dict is not null || arg is List<object?> and not PyTuple || arg is Undefined;
        var sb = new StringBuilder();
        int next = 0;
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c != '%')
            {
                sb.Append(c);
                continue;
            }
            if (++i >= fmt.Length) throw interp.Error(at, "incomplete format");
            object? value = null;
            bool haveValue = false;
            if (fmt[i] == '(')
            {
                int close = fmt.IndexOf(')', i);
                if (close < 0 || dict is null) throw interp.Error(at, "format requires a mapping");
                string key = fmt[(i + 1)..close];
                value = dict.TryGetValue(key, out var dv) ? dv : throw interp.Error(at, $"KeyError: '{key}'");
                haveValue = true;
                i = close + 1;
            }
            int specStart = i;
            while (i < fmt.Length && (char.IsAsciiDigit(fmt[i]) || fmt[i] is '.' or '-' or '+' or ' ' or '0' or '#')) i++;
            if (i >= fmt.Length) throw interp.Error(at, "incomplete format");
            string spec = fmt[specStart..i];
            char conv = fmt[i];
            if (conv == '%')
            {
                sb.Append('%');
                continue;
            }
            if (!haveValue)
            {
                if (next >= args.Count) throw interp.Error(at, "not enough arguments for format string");
                value = args[next++];
            }
            string text = conv switch
            {
                's' => Py.Str(value),
                'r' => Py.Repr(value),
                'd' or 'i' => value is long or bool || value is double ? ((long)Math.Truncate(Py.ToDouble(value))).ToString(CultureInfo.InvariantCulture)
                    : throw interp.Error(at, $"%{conv} format: a real number is required, not {Py.TypeName(value)}"),
                'f' or 'F' => Py.IsNumber(value) ? Py.ToDouble(value).ToString("F" + Precision(spec, 6), CultureInfo.InvariantCulture)
                    : throw interp.Error(at, $"must be real number, not {Py.TypeName(value)}"),
                _ => throw interp.Error(at, $"unsupported format character '{conv}'"),
            };
            int width = Width(spec);
            sb.Append(spec.StartsWith('-') ? text.PadRight(width) : text.PadLeft(width));
        }
        if (!mappingLike && next < args.Count) throw interp.Error(at, "not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static int Precision(string spec, int def)
    {
        int dot = spec.IndexOf('.');
        return dot >= 0 && int.TryParse(spec[(dot + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int p) ? p : def;
    }

    private static int Width(string spec)
    {
        string w = new(spec.TrimStart('-', '+', ' ', '0', '#').TakeWhile(char.IsAsciiDigit).ToArray());
        return w.Length > 0 ? int.Parse(w, CultureInfo.InvariantCulture) : 0;
    }

    public static string StrFormat(Interpreter interp, string fmt, List<object?> args, List<(string Name, object? Value)> kwargs, Node at)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c == '{' && i + 1 < fmt.Length && fmt[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < fmt.Length && fmt[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c != '{') { sb.Append(c); continue; }
            int close = fmt.IndexOf('}', i);
            if (close < 0) throw interp.Error(at, "Single '{' encountered in format string");
            string field = fmt[(i + 1)..close];
            int colon = field.IndexOf(':');
            if (colon >= 0) field = field[..colon];
            object? value;
            if (field.Length == 0)
                value = auto < args.Count ? args[auto++] : throw interp.Error(at, "Replacement index out of range for positional args tuple");
            else if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out int idx))
                value = idx < args.Count ? args[idx] : throw interp.Error(at, "Replacement index out of range for positional args tuple");
            else
            {
                var hit = kwargs.FirstOrDefault(k => k.Name == field);
                value = hit.Name is not null ? hit.Value : throw interp.Error(at, $"KeyError: '{field}'");
            }
            sb.Append(Py.Str(value));
            i = close;
        }
        return sb.ToString();
    }
}
