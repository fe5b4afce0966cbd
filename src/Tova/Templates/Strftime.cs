using System.Globalization;
using System.Text;

namespace Tova.Templates;

/// <summary>Python's <c>datetime.strftime</c> in the C locale (the directives chat templates use, and glibc's <c>%-d</c> forms).</summary>
internal static class Strftime
{
    public static string Format(DateTime t, string format)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            char c = format[i];
            if (c != '%' || i + 1 >= format.Length)
            {
                sb.Append(c);
                continue;
            }
            char d = format[++i];
            bool noPad = false;
            if (d == '-' && i + 1 < format.Length)
            {
                noPad = true;
                d = format[++i];
            }
            string Num(int v, int width) => noPad ? v.ToString(ci) : v.ToString(new string('0', width), ci);
            switch (d)
            {
                case 'd': sb.Append(Num(t.Day, 2)); break;
                case 'e': sb.Append(noPad ? t.Day.ToString(ci) : t.Day.ToString(ci).PadLeft(2)); break;
                case 'm': sb.Append(Num(t.Month, 2)); break;
                case 'Y': sb.Append(t.Year.ToString(ci)); break;
                case 'y': sb.Append(Num(t.Year % 100, 2)); break;
                case 'H': sb.Append(Num(t.Hour, 2)); break;
                case 'I': sb.Append(Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2)); break;
                case 'M': sb.Append(Num(t.Minute, 2)); break;
                case 'S': sb.Append(Num(t.Second, 2)); break;
                case 'f': sb.Append((t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", ci)); break;
                case 'p': sb.Append(t.Hour < 12 ? "AM" : "PM"); break;
                case 'b': case 'h': sb.Append(ci.DateTimeFormat.GetAbbreviatedMonthName(t.Month)); break;
                case 'B': sb.Append(ci.DateTimeFormat.GetMonthName(t.Month)); break;
                case 'a': sb.Append(ci.DateTimeFormat.GetAbbreviatedDayName(t.DayOfWeek)); break;
                case 'A': sb.Append(ci.DateTimeFormat.GetDayName(t.DayOfWeek)); break;
                case 'w': sb.Append(((int)t.DayOfWeek).ToString(ci)); break;
                case 'u': sb.Append((t.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)t.DayOfWeek).ToString(ci)); break;
                case 'j': sb.Append(Num(t.DayOfYear, 3)); break;
                case 'F': sb.Append(t.ToString("yyyy-MM-dd", ci)); break;
                case 'T': sb.Append(t.ToString("HH:mm:ss", ci)); break;
                case 'D': sb.Append(t.ToString("MM/dd/yy", ci)); break;
                case 'R': sb.Append(t.ToString("HH:mm", ci)); break;
                case 'z': case 'Z': break;
                case '%': sb.Append('%'); break;
                default: sb.Append('%').Append(noPad ? "-" : "").Append(d); break;
            }
        }
        return sb.ToString();
    }
}
