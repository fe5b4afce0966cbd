namespace Tova.Templates;

/// <summary>
/// A value that is not there (a missing variable, key or attribute), with Jinja2's default behaviour: it prints as
/// nothing, is false, has length 0 and iterates as empty; using it as an object (its attribute, an item, arithmetic)
/// is an error naming what was missing.
/// </summary>
internal sealed class Undefined(string hint)
{
    public string Hint { get; } = hint;
    public static Undefined Of(string name) => new($"'{name}' is undefined");
    public override string ToString() => "";
}

/// <summary>The object <c>namespace(...)</c> makes: attributes a <c>{% set ns.x = … %}</c> can change from any scope.</summary>
internal sealed class Namespace
{
    public OrderedDictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>Something a template can call: a macro, a global function or a method bound to its value.</summary>
internal abstract class Callable
{
    public abstract string Name { get; }
    public abstract object? Invoke(Interpreter interp, List<object?> args, List<(string Name, object? Value)> kwargs, Node at);
}

/// <summary>A built-in function or a bound method.</summary>
internal sealed class BuiltinFunction(string name, Func<Interpreter, List<object?>, List<(string Name, object? Value)>, Node, object?> body) : Callable
{
    public override string Name => name;
    public override object? Invoke(Interpreter interp, List<object?> args, List<(string Name, object? Value)> kwargs, Node at) => body(interp, args, kwargs, at);
}

/// <summary>A macro: its parameters with defaults, its body, and the scope it was defined in.</summary>
internal sealed class MacroValue(MacroNode node, Frame closure) : Callable
{
    public MacroNode Node { get; } = node;
    public Frame Closure { get; } = closure;
    public override string Name => Node.Name;
    public override object? Invoke(Interpreter interp, List<object?> args, List<(string Name, object? Value)> kwargs, Node at) =>
        interp.CallMacro(this, args, kwargs, null, at);
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class LoopInfo
{
    public required List<object?> Items { get; init; }
    public int Index0 { get; set; }
    public int Depth0 { get; init; }
    public ForNode? Recursive { get; init; }
    public Frame? Frame { get; init; }
}

/// <summary>A scope of variables; lookups go up to the parent (the template's globals at the root).</summary>
internal sealed class Frame(Frame? parent)
{
    public Frame? Parent { get; } = parent;
    public Dictionary<string, object?> Vars { get; } = new(StringComparer.Ordinal);

    public bool TryGet(string name, out object? value)
    {
        for (var f = this; f is not null; f = f.Parent)
            if (f.Vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }
}

/// <summary>
/// What Jinja2's select/map/… filters return, a Python generator: it iterates like a list, but is always true, has no
/// length, cannot be indexed and is not JSON serializable.
/// </summary>
internal sealed class PyGenerator(IEnumerable<object?> items) : List<object?>(items);

/// <summary>
/// A string marked safe (Jinja2's <c>Markup</c>, from the <c>safe</c> and <c>escape</c> filters). It behaves as its text
/// except in <c>+</c>, where a plain string joined to it is HTML-escaped first, as markupsafe does.
/// </summary>
internal sealed class Markup(string value)
{
    public string Value { get; } = value;
    public override string ToString() => Value;
    public static string Escape(string s) =>
        s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;");
}

/// <summary>A Python tuple: a list that prints in parentheses (macro varargs, dict items, tuple literals).</summary>
internal sealed class PyTuple(IEnumerable<object?> items) : List<object?>(items);

/// <summary>What <c>range(...)</c> returns: iterates as its numbers, prints as Python's range object, is not JSON serializable.</summary>
internal sealed class PyRange(long start, long stop, long step, IEnumerable<object?> items) : List<object?>(items)
{
    public override string ToString() => step == 1 ? $"range({start}, {stop})" : $"range({start}, {stop}, {step})";
}
