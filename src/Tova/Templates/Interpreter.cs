using System.Text;

namespace Tova.Templates;

/// <summary>
/// Evaluates a parsed template: statements write to a <see cref="StringBuilder"/>, expressions follow Python's
/// semantics (<see cref="Py"/>), and scopes follow Jinja2's (a for loop and a macro open a scope; if does not;
/// namespaces carry values out of loops). Every failure becomes a <see cref="TemplateException"/> at the node.
/// </summary>
internal sealed class Interpreter
{
    private enum Flow { Normal, Break, Continue }

    private readonly string _name;
    private int _depth;
    private long _iterations;
    private int _outputChars;
    private Node? _current;

    public TemplateOptions Options { get; }

    public Interpreter(string name, TemplateOptions options)
    {
        _name = name;
        Options = options;
    }

    public string Render(Node[] body, Frame globals)
    {
        var sb = new StringBuilder();
        try
        {
            ExecBody(body, new Frame(globals), sb);
        }
        catch (TemplateException)
        {
            throw;
        }
        catch (Exception e) when (e is InvalidOperationException or OverflowException or ArgumentException or InvalidCastException
                                      or FormatException or IndexOutOfRangeException or KeyNotFoundException
                                      or DivideByZeroException or NotSupportedException or InsufficientExecutionStackException)
        {
            throw Error(_current, e.Message, e);
        }
        return sb.ToString();
    }

    public TemplateException Error(Node? at, string detail, Exception? inner = null) =>
        new(TemplateErrorKind.Runtime, _name, at?.Line ?? 1, at?.Column ?? 1, detail, inner);

    public TemplateException Raised(Node at, string message) => new(TemplateErrorKind.Raised, _name, at.Line, at.Column, message);

    // ---- statements ----

    private Flow ExecBody(Node[] body, Frame f, StringBuilder sb)
    {
        foreach (var n in body)
        {
            var flow = Exec(n, f, sb);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private void Write(StringBuilder sb, string s)
    {
        _outputChars += s.Length;
        if (_outputChars > Options.MaxOutputChars || _outputChars < 0)
            throw Error(_current, $"the output is larger than {Options.MaxOutputChars} characters");
        sb.Append(s);
    }

    private Flow Exec(Node n, Frame f, StringBuilder sb)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        _current = n;
        switch (n)
        {
            case TextNode t:
                Write(sb, t.Text);
                return Flow.Normal;
            case OutputNode o:
                Write(sb, Py.Str(Eval(o.Value, f)));
                return Flow.Normal;
            case IfNode i:
                foreach (var (test, body) in i.Branches)
                    if (Py.Truthy(Eval(test, f))) return ExecBody(body, f, sb);
                return i.Else is null ? Flow.Normal : ExecBody(i.Else, f, sb);
            case ForNode fo:
                ExecFor(fo, Eval(fo.Iterable, f), f, sb, 0);
                return Flow.Normal;
            case SetNode s:
                Assign(s.Target, Eval(s.Value, f), f, s);
                return Flow.Normal;
            case SetBlockNode sbn:
            {
                var inner = new StringBuilder();
                ExecBody(sbn.Body, new Frame(f), inner); // assignments inside the block stay inside it
                object? v = inner.ToString();
                foreach (var filter in sbn.Filters) v = ApplyFilter(filter, v, f);
                Assign(sbn.Target, v, f, sbn);
                return Flow.Normal;
            }
            case MacroNode m:
                f.Vars[m.Name] = new MacroValue(m, f);
                return Flow.Normal;
            case CallBlockNode c:
            {
                var callee = Eval(c.Call.Callee, f);
                var caller = new MacroValue(new MacroNode("caller", c.CallerParams, c.Body, c.Line, c.Column), f);
                var (args, kwargs) = EvalArgs(c.Call.Args, c.Call.Kwargs, f);
                string result = callee switch
                {
                    MacroValue m => Py.Str(CallMacro(m, args, kwargs, caller, c)),
                    Undefined u => throw Error(c, u.Hint),
                    _ => throw Error(c, $"'{Py.TypeName(callee)}' object is not callable"),
                };
                Write(sb, result);
                return Flow.Normal;
            }
            case FilterBlockNode fb:
            {
                var inner = new StringBuilder();
                ExecBody(fb.Body, new Frame(f), inner);
                object? v = inner.ToString();
                foreach (var filter in fb.Filters) v = ApplyFilter(filter, v, f);
                Write(sb, Py.Str(v));
                return Flow.Normal;
            }
            case GroupNode g:
                return ExecBody(g.Body, f, sb);
            case BreakNode:
                return Flow.Break;
            case ContinueNode:
                return Flow.Continue;
            default:
                throw Error(n, $"cannot execute {n.GetType().Name}");
        }
    }

    private void ExecFor(ForNode fo, object? iterable, Frame f, StringBuilder sb, int depth)
    {
        var source = Iterate(iterable, fo.Iterable);
        List<object?> items;
        if (fo.Filter is null) items = source;
        else
        {
            items = [];
            foreach (var item in source)
            {
                var probe = new Frame(f);
                Bind(fo.Target, item, probe, fo);
                if (Py.Truthy(Eval(fo.Filter, probe))) items.Add(item);
            }
        }
        if (items.Count == 0)
        {
            if (fo.Else is not null) ExecBody(fo.Else, f, sb);
            return;
        }
        var loop = new LoopInfo { Items = items, Depth0 = depth, Recursive = fo.Recursive ? fo : null, Frame = f };
        for (int i = 0; i < items.Count; i++)
        {
            if (++_iterations > Options.MaxIterations) throw Error(fo, $"more than {Options.MaxIterations} loop iterations");
            loop.Index0 = i;
            var frame = new Frame(f);
            Bind(fo.Target, items[i], frame, fo);
            frame.Vars["loop"] = loop;
            if (ExecBody(fo.Body, frame, sb) == Flow.Break) break;
        }
    }

    /// <summary><c>loop(items)</c> in a recursive for: the loop body over the items, one level deeper.</summary>
    private string CallLoop(LoopInfo loop, List<object?> args, Node at)
    {
        if (loop.Recursive is null) throw Error(at, "the loop is not recursive (add 'recursive' to the for tag)");
        if (args.Count != 1) throw Error(at, "loop() takes one argument");
        if (++_depth > Options.MaxCallDepth) throw Error(at, $"recursion deeper than {Options.MaxCallDepth}");
        try
        {
            var sb = new StringBuilder();
            ExecFor(loop.Recursive, args[0], loop.Frame!, sb, loop.Depth0 + 1);
            return sb.ToString();
        }
        finally
        {
            _depth--;
        }
    }

    private void Bind(Target target, object? value, Frame f, Node at)
    {
        switch (target)
        {
            case NameTarget n:
                f.Vars[n.Name] = value;
                break;
            case TupleTarget t:
            {
                var items = value is List<object?> l ? l : Iterate(value, at);
                if (items.Count != t.Names.Length)
                    throw Error(at, items.Count > t.Names.Length ? $"too many values to unpack (expected {t.Names.Length})" : $"not enough values to unpack (expected {t.Names.Length}, got {items.Count})");
                for (int i = 0; i < items.Count; i++) f.Vars[t.Names[i]] = items[i];
                break;
            }
            default:
                throw Error(at, "cannot bind to this target");
        }
    }

    private void Assign(Target target, object? value, Frame f, Node at)
    {
        if (target is AttrTarget a)
        {
            if (!f.TryGet(a.Object, out var obj)) throw Error(at, $"'{a.Object}' is undefined");
            if (obj is not Namespace ns) throw Error(at, "cannot assign attribute on non-namespace object");
            ns.Attributes[a.Attr] = value;
            return;
        }
        Bind(target, value, f, at);
    }

    public object? CallMacro(MacroValue m, List<object?> args, List<(string Name, object? Value)> kwargs, MacroValue? caller, Node at)
    {
        if (++_depth > Options.MaxCallDepth) throw Error(at, $"macro calls nested deeper than {Options.MaxCallDepth} (recursion?)");
        try
        {
            var frame = new Frame(m.Closure);
            var ps = m.Node.Params;
            var extraKw = Py.NewDict();
            var used = new bool[ps.Length];
            for (int i = 0; i < Math.Min(args.Count, ps.Length); i++)
            {
                frame.Vars[ps[i].Name] = args[i];
                used[i] = true;
            }
            foreach (var (name, value) in kwargs)
            {
                int idx = Array.FindIndex(ps, p => p.Name == name);
                if (idx < 0) extraKw[name] = value;
                else
                {
                    if (used[idx]) throw Error(at, $"macro '{m.Name}' got multiple values for argument '{name}'");
                    frame.Vars[name] = value;
                    used[idx] = true;
                }
            }
            for (int i = 0; i < ps.Length; i++)
                if (!used[i]) frame.Vars[ps[i].Name] = ps[i].Default is null ? Undefined.Of(ps[i].Name) : Eval(ps[i].Default!, frame);
            frame.Vars["varargs"] = new PyTuple(args.Skip(ps.Length));
            frame.Vars["kwargs"] = extraKw;
            if (caller is not null) frame.Vars["caller"] = caller;
            var sb = new StringBuilder();
            var saved = _current;
            ExecBody(m.Node.Body, frame, sb);
            _current = saved;
            return sb.ToString();
        }
        finally
        {
            _depth--;
        }
    }

    // ---- expressions ----

    public object? Eval(Expr e, Frame f)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        switch (e)
        {
            case LiteralExpr l: return l.Value;
            case NameExpr n: return f.TryGet(n.Name, out var v) ? v : Undefined.Of(n.Name);
            case ListExpr l:
            {
                var list = new List<object?>(l.Items.Length);
                foreach (var item in l.Items) list.Add(Eval(item, f));
                return l.Tuple ? new PyTuple(list) : list;
            }
            case DictExpr d:
            {
                var dict = Py.NewDict();
                foreach (var (k, val) in d.Pairs)
                {
                    var key = Eval(k, f);
                    if (key is null or Undefined or OrderedDictionary<object, object?> || key is List<object?> and not PyTuple)
                        throw Error(k, $"unhashable or missing dictionary key ({Py.TypeName(key)})");
                    dict[key] = Eval(val, f);
                }
                return dict;
            }
            case AttrExpr a: return Builtins.GetAttr(this, Eval(a.Target, f), a.Attr, a);
            case ItemExpr it:
            {
                var target = Eval(it.Target, f);
                if (it.Key is SliceExpr s)
                {
                    if (target is Undefined u) throw Error(it, u.Hint);
                    return Builtins.Slice(this, target, s.Start is null ? null : Eval(s.Start, f), s.Stop is null ? null : Eval(s.Stop, f), s.Step is null ? null : Eval(s.Step, f), it);
                }
                return Builtins.GetItem(this, target, Eval(it.Key, f), it);
            }
            case CallExpr c:
            {
                var callee = Eval(c.Callee, f);
                var (args, kwargs) = EvalArgs(c.Args, c.Kwargs, f);
                return callee switch
                {
                    Callable fn => fn.Invoke(this, args, kwargs, c),
                    LoopInfo loop => CallLoop(loop, args, c),
                    Undefined u => throw Error(c, u.Hint.Contains("attribute", StringComparison.Ordinal) ? u.Hint : $"{u.Hint} (not a function)"),
                    _ => throw Error(c, $"'{Py.TypeName(callee)}' object is not callable"),
                };
            }
            case FilterExpr fe: return ApplyFilter(fe, Eval(fe.Value!, f), f);
            case TestExpr t:
            {
                var value = Eval(t.Value, f);
                var args = new List<object?>(t.Args.Length);
                foreach (var a in t.Args) args.Add(Eval(a, f));
                bool r = Builtins.Test(this, t.Name, value, args, t);
                return t.Negated ? !r : r;
            }
            case UnaryExpr u:
            {
                var x = Eval(u.Operand, f);
                return u.Op switch
                {
                    "not" => !Py.Truthy(x),
                    "-" => x switch
                    {
                        long l => (object)checked(-l),
                        double d => -d,
                        bool b => b ? -1L : 0L,
                        Undefined un => throw Error(u, un.Hint),
                        _ => throw Error(u, $"bad operand type for unary -: '{Py.TypeName(x)}'"),
                    },
                    _ => x switch
                    {
                        long or double => x,
                        bool b => (object)(b ? 1L : 0L),
                        Undefined un => throw Error(u, un.Hint),
                        _ => throw Error(u, $"bad operand type for unary +: '{Py.TypeName(x)}'"),
                    },
                };
            }
            case BinaryExpr b:
            {
                if (b.Op == "and")
                {
                    var l = Eval(b.Left, f);
                    return Py.Truthy(l) ? Eval(b.Right, f) : l;
                }
                if (b.Op == "or")
                {
                    var l = Eval(b.Left, f);
                    return Py.Truthy(l) ? l : Eval(b.Right, f);
                }
                return Builtins.Binary(this, b.Op, Eval(b.Left, f), Eval(b.Right, f), b);
            }
            case CompareExpr c:
            {
                var left = Eval(c.First, f);
                foreach (var (op, rightExpr) in c.Rest)
                {
                    var right = Eval(rightExpr, f);
                    if (!Builtins.Compare(this, op, left, right, c)) return false;
                    left = right;
                }
                return true;
            }
            case CondExpr c:
                return Py.Truthy(Eval(c.Test, f)) ? Eval(c.Then, f) : c.Else is null ? new Undefined("the conditional expression has no else branch") : Eval(c.Else, f);
            case SliceExpr s:
                throw Error(s, "a slice is only valid inside []");
            default:
                throw Error(e, $"cannot evaluate {e.GetType().Name}");
        }
    }

    private (List<object?> Args, List<(string Name, object? Value)> Kwargs) EvalArgs(Expr[] args, (string Name, Expr Value)[] kwargs, Frame f)
    {
        var a = new List<object?>(args.Length);
        foreach (var x in args) a.Add(Eval(x, f));
        var k = new List<(string, object?)>(kwargs.Length);
        foreach (var (name, x) in kwargs) k.Add((name, Eval(x, f)));
        return (a, k);
    }

    private object? ApplyFilter(FilterExpr fe, object? value, Frame f)
    {
        var (args, kwargs) = EvalArgs(fe.Args, fe.Kwargs, f);
        try
        {
            return Filters.Apply(this, fe.Name, value, args, kwargs, fe);
        }
        catch (Exception ex) when (ex is not TemplateException and (InvalidOperationException or OverflowException or ArgumentException or InvalidCastException or FormatException))
        {
            throw Error(fe, $"filter '{fe.Name}': {ex.Message}", ex);
        }
    }

    /// <summary>The items a for loop (or a filter) walks: a list's items, a dict's keys, a string's characters; undefined is empty.</summary>
    public List<object?> Iterate(object? v, Node at) => Py.Unwrap(v) switch
    {
        List<object?> l => [.. l],
        OrderedDictionary<object, object?> d => [.. d.Keys],
        string s => Builtins.Chars(s),
        Undefined => [],
        var other => throw Error(at, $"'{Py.TypeName(other)}' object is not iterable"),
    };
}
