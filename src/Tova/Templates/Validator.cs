namespace Tova.Templates;

/// <summary>
/// Checks a parsed template as Jinja2's compiler does before any rendering: every filter and test it names exists,
/// and break/continue only appear inside a for loop.
/// </summary>
internal static class Validator
{
    public static void Check(Node[] body, string name)
    {
        foreach (var n in body) Visit(n, name, inLoop: false);
    }

    private static TemplateException Error(Node at, string name, string detail) => new(TemplateErrorKind.Syntax, name, at.Line, at.Column, detail);

    private static void VisitAll(IEnumerable<Node?> nodes, string name, bool inLoop)
    {
        foreach (var n in nodes)
            if (n is not null) Visit(n, name, inLoop);
    }

    private static void Visit(Node n, string name, bool inLoop)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        switch (n)
        {
            case FilterExpr f:
                if (!Filters.Names.Contains(f.Name)) throw Error(f, name, $"no filter named '{f.Name}'");
                if (f.Value is not null) Visit(f.Value, name, inLoop);
                VisitAll(f.Args, name, inLoop);
                VisitAll(f.Kwargs.Select(k => k.Value), name, inLoop);
                break;
            case TestExpr t:
                if (!Builtins.TestNames.Contains(t.Name)) throw Error(t, name, $"no test named '{t.Name}'");
                Visit(t.Value, name, inLoop);
                VisitAll(t.Args, name, inLoop);
                break;
            case BreakNode or ContinueNode when !inLoop:
                throw Error(n, name, $"'{(n is BreakNode ? "break" : "continue")}' outside a for loop");
            case ListExpr l: VisitAll(l.Items, name, inLoop); break;
            case DictExpr d: VisitAll(d.Pairs.SelectMany(p => new Node[] { p.Key, p.Value }), name, inLoop); break;
            case AttrExpr a: Visit(a.Target, name, inLoop); break;
            case ItemExpr i: Visit(i.Target, name, inLoop); Visit(i.Key, name, inLoop); break;
            case SliceExpr s: VisitAll([s.Start, s.Stop, s.Step], name, inLoop); break;
            case CallExpr c: Visit(c.Callee, name, inLoop); VisitAll(c.Args, name, inLoop); VisitAll(c.Kwargs.Select(k => k.Value), name, inLoop); break;
            case UnaryExpr u: Visit(u.Operand, name, inLoop); break;
            case BinaryExpr b: Visit(b.Left, name, inLoop); Visit(b.Right, name, inLoop); break;
            case CompareExpr c: Visit(c.First, name, inLoop); VisitAll(c.Rest.Select(r => r.Right), name, inLoop); break;
            case CondExpr c: VisitAll([c.Test, c.Then, c.Else], name, inLoop); break;
            case OutputNode o: Visit(o.Value, name, inLoop); break;
            case IfNode i:
                foreach (var (test, b) in i.Branches) { Visit(test, name, inLoop); VisitAll(b, name, inLoop); }
                if (i.Else is not null) VisitAll(i.Else, name, inLoop);
                break;
            case ForNode f:
                Visit(f.Iterable, name, inLoop);
                if (f.Filter is not null) Visit(f.Filter, name, inLoop);
                VisitAll(f.Body, name, true);
                if (f.Else is not null) VisitAll(f.Else, name, inLoop);
                break;
            case SetNode s: Visit(s.Value, name, inLoop); break;
            case SetBlockNode sb: VisitAll(sb.Filters, name, inLoop); VisitAll(sb.Body, name, inLoop); break;
            case MacroNode m: VisitAll(m.Params.Select(p => p.Default), name, false); VisitAll(m.Body, name, false); break;
            case CallBlockNode cb: Visit(cb.Call, name, inLoop); VisitAll(cb.Body, name, false); break;
            case FilterBlockNode fb: VisitAll(fb.Filters, name, inLoop); VisitAll(fb.Body, name, inLoop); break;
            case GroupNode g: VisitAll(g.Body, name, inLoop); break;
        }
    }
}
