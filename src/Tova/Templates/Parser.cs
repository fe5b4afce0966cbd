using System.Globalization;

namespace Tova.Templates;

/// <summary>
/// Parses tokens into statements and expressions with Jinja2's grammar and precedence: conditional expression,
/// or, and, not, comparisons (chained; in, not in), + and -, ~, * / // %, **, unary - and +, then primaries with
/// attribute, item, slice and call postfixes and the filters (<c>|</c>) and tests (<c>is</c>) that bind tightest.
/// </summary>
internal sealed class Parser
{
    private readonly List<Token> _t;
    private readonly string _name;
    private int _i;

    private Parser(List<Token> tokens, string name)
    {
        _t = tokens;
        _name = name;
    }

    public static Node[] Parse(List<Token> tokens, string name)
    {
        var p = new Parser(tokens, name);
        var body = p.ParseBody(out var end, []);
        if (end is not null) throw p.Error(end.Value, $"unexpected '{end.Value.Value}'");
        return body;
    }

    private Token Cur => _t[_i];
    private Token Next() => _t[_i++];

    private TemplateException Error(Token at, string detail) =>
        new(TemplateErrorKind.Syntax, _name, at.Line, at.Column, detail);

    private Token Expect(TokenKind kind, string? value = null)
    {
        var t = Cur;
        if (t.Kind != kind || (value is not null && t.Value != value))
        {
            string want = value is not null ? $"'{value}'" : kind switch
            {
                TokenKind.Name => "a name",
                TokenKind.BlockEnd => "'%}'",
                TokenKind.VariableEnd => "'}}'",
                _ => kind.ToString(),
            };
            throw Error(t, $"expected {want}, got {t}");
        }
        _i++;
        return t;
    }

    private bool SkipOp(string op)
    {
        if (!Cur.IsOp(op)) return false;
        _i++;
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Cur.IsName(name)) return false;
        _i++;
        return true;
    }

    /// <summary>
    /// Statements up to a block tag whose keyword is in <paramref name="ends"/> (returned in <paramref name="end"/>, the
    /// parser left on the keyword) or the end of the template (end = null).
    /// </summary>
    private Node[] ParseBody(out Token? end, string[] ends)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        var nodes = new List<Node>();
        while (true)
        {
            var t = Cur;
            switch (t.Kind)
            {
                case TokenKind.Eof:
                    end = null;
                    return [.. nodes];
                case TokenKind.Text:
                    _i++;
                    nodes.Add(new TextNode(t.Value, t.Line, t.Column));
                    break;
                case TokenKind.VariableBegin:
                    _i++;
                    var e = ParseExpression();
                    Expect(TokenKind.VariableEnd);
                    nodes.Add(new OutputNode(e, t.Line, t.Column));
                    break;
                case TokenKind.BlockBegin:
                    _i++;
                    var kw = Cur;
                    if (kw.Kind == TokenKind.Name && ends.Contains(kw.Value))
                    {
                        end = kw;
                        return [.. nodes];
                    }
                    if (kw.Kind == TokenKind.Name && (kw.Value.StartsWith("end", StringComparison.Ordinal) || kw.Value is "else" or "elif"))
                        throw Error(kw, ends.Length == 0
                            ? $"unexpected '{kw.Value}': no block is open"
                            : $"unexpected '{kw.Value}': expected {string.Join(" or ", ends.Select(x => $"'{x}'"))}");
                    nodes.Add(ParseStatement(t));
                    break;
                default:
                    throw Error(t, $"unexpected {t}");
            }
        }
    }

    private Node[] Block(string opener, Token start, string[] ends, out Token end)
    {
        var body = ParseBody(out var e, ends);
        if (e is null)
            throw Error(start, $"'{opener}' is not closed: expected {string.Join(" or ", ends.Select(x => $"'{{% {x} %}}'"))} before the end of the template");
        end = e.Value;
        _i++;
        return body;
    }

    private Node ParseStatement(Token begin)
    {
        var kw = Expect(TokenKind.Name);
        switch (kw.Value)
        {
            case "if": return ParseIf(kw);
            case "for": return ParseFor(kw);
            case "set": return ParseSet(kw);
            case "macro": return ParseMacro(kw);
            case "call": return ParseCallBlock(kw);
            case "filter": return ParseFilterBlock(kw);
            case "break":
                Expect(TokenKind.BlockEnd);
                return new BreakNode(kw.Line, kw.Column);
            case "continue":
                Expect(TokenKind.BlockEnd);
                return new ContinueNode(kw.Line, kw.Column);
            case "generation":
            {
                Expect(TokenKind.BlockEnd);
                var body = Block("generation", kw, ["endgeneration"], out _);
                Expect(TokenKind.BlockEnd);
                return new GroupNode(body, kw.Line, kw.Column);
            }
            default:
                throw Error(kw, $"unknown or unsupported statement '{kw.Value}'");
        }
    }

    private IfNode ParseIf(Token kw)
    {
        var branches = new List<(Expr, Node[])>();
        Node[]? elseBody = null;
        var test = ParseExpression();
        Expect(TokenKind.BlockEnd);
        while (true)
        {
            var body = Block("if", kw, ["elif", "else", "endif"], out var end);
            branches.Add((test, body));
            if (end.Value == "elif")
            {
                test = ParseExpression();
                Expect(TokenKind.BlockEnd);
                continue;
            }
            Expect(TokenKind.BlockEnd);
            if (end.Value == "else")
            {
                elseBody = Block("if", kw, ["endif"], out _);
                Expect(TokenKind.BlockEnd);
            }
            break;
        }
        return new IfNode([.. branches], elseBody, kw.Line, kw.Column);
    }

    private ForNode ParseFor(Token kw)
    {
        var target = ParseTarget(allowAttr: false);
        Expect(TokenKind.Name, "in");
        var iter = ParseCondition(withCond: false);
        Expr? filter = null;
        if (SkipName("if")) filter = ParseCondition(withCond: true);
        bool recursive = SkipName("recursive");
        Expect(TokenKind.BlockEnd);
        var body = Block("for", kw, ["else", "endfor"], out var end);
        Node[]? elseBody = null;
        Expect(TokenKind.BlockEnd);
        if (end.Value == "else")
        {
            elseBody = Block("for", kw, ["endfor"], out _);
            Expect(TokenKind.BlockEnd);
        }
        return new ForNode(target, iter, filter, body, elseBody, recursive, kw.Line, kw.Column);
    }

    private Target ParseTarget(bool allowAttr)
    {
        var first = Expect(TokenKind.Name);
        if (allowAttr && Cur.IsOp("."))
        {
            _i++;
            var attr = Expect(TokenKind.Name);
            return new AttrTarget(first.Value, attr.Value, first.Line, first.Column);
        }
        if (!Cur.IsOp(",")) return new NameTarget(first.Value, first.Line, first.Column);
        var names = new List<string> { first.Value };
        while (SkipOp(","))
        {
            if (Cur.Kind != TokenKind.Name) break;
            names.Add(Next().Value);
        }
        return new TupleTarget([.. names], first.Line, first.Column);
    }

    private Node ParseSet(Token kw)
    {
        var target = ParseTarget(allowAttr: true);
        if (SkipOp("="))
        {
            var value = ParseTuple();
            Expect(TokenKind.BlockEnd);
            return new SetNode(target, value, kw.Line, kw.Column);
        }
        var filters = new List<FilterExpr>();
        while (SkipOp("|")) filters.Add(ParseFilter(null));
        Expect(TokenKind.BlockEnd);
        var body = Block("set", kw, ["endset"], out _);
        Expect(TokenKind.BlockEnd);
        return new SetBlockNode(target, [.. filters], body, kw.Line, kw.Column);
    }

    private Param[] ParseParams()
    {
        var ps = new List<Param>();
        Expect(TokenKind.Operator, "(");
        while (!Cur.IsOp(")"))
        {
            if (ps.Count > 0) Expect(TokenKind.Operator, ",");
            if (Cur.IsOp(")")) break;
            var name = Expect(TokenKind.Name);
            Expr? def = SkipOp("=") ? ParseExpression() : null;
            ps.Add(new Param(name.Value, def));
        }
        _i++;
        return [.. ps];
    }

    private MacroNode ParseMacro(Token kw)
    {
        var name = Expect(TokenKind.Name);
        var ps = ParseParams();
        Expect(TokenKind.BlockEnd);
        var body = Block("macro", kw, ["endmacro"], out _);
        if (Cur.Kind == TokenKind.Name) _i++; // {% endmacro name %}
        Expect(TokenKind.BlockEnd);
        return new MacroNode(name.Value, ps, body, kw.Line, kw.Column);
    }

    private CallBlockNode ParseCallBlock(Token kw)
    {
        Param[] callerParams = Cur.IsOp("(") ? ParseParams() : [];
        var call = ParseExpression();
        if (call is not CallExpr c) throw Error(kw, "'call' needs a macro call such as {% call m(x) %}");
        Expect(TokenKind.BlockEnd);
        var body = Block("call", kw, ["endcall"], out _);
        Expect(TokenKind.BlockEnd);
        return new CallBlockNode(c, callerParams, body, kw.Line, kw.Column);
    }

    private FilterBlockNode ParseFilterBlock(Token kw)
    {
        var filters = new List<FilterExpr> { ParseFilter(null) };
        while (SkipOp("|")) filters.Add(ParseFilter(null));
        Expect(TokenKind.BlockEnd);
        var body = Block("filter", kw, ["endfilter"], out _);
        Expect(TokenKind.BlockEnd);
        return new FilterBlockNode([.. filters], body, kw.Line, kw.Column);
    }

    // ---- expressions ----

    /// <summary>An expression, or several separated by commas (a tuple), as a set's value takes.</summary>
    private Expr ParseTuple()
    {
        var first = ParseExpression();
        if (!Cur.IsOp(",")) return first;
        var items = new List<Expr> { first };
        while (SkipOp(","))
        {
            if (Cur.Kind is TokenKind.BlockEnd or TokenKind.VariableEnd) break;
            items.Add(ParseExpression());
        }
        return new ListExpr([.. items], true, first.Line, first.Column);
    }

    public Expr ParseExpression() => ParseCondition(withCond: true);

    private Expr ParseCondition(bool withCond)
    {
        var expr = ParseOr();
        if (!withCond) return expr;
        while (Cur.IsName("if"))
        {
            var at = Next();
            var test = ParseOr();
            Expr? otherwise = SkipName("else") ? ParseCondition(true) : null;
            expr = new CondExpr(test, expr, otherwise, at.Line, at.Column);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Cur.IsName("or"))
        {
            var at = Next();
            left = new BinaryExpr("or", left, ParseAnd(), at.Line, at.Column);
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Cur.IsName("and"))
        {
            var at = Next();
            left = new BinaryExpr("and", left, ParseNot(), at.Line, at.Column);
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (Cur.IsName("not"))
        {
            var at = Next();
            return new UnaryExpr("not", ParseNot(), at.Line, at.Column);
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var t = Cur;
            if (t.Kind == TokenKind.Operator && t.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                _i++;
                rest.Add((t.Value, ParseMath1()));
            }
            else if (t.IsName("in"))
            {
                _i++;
                rest.Add(("in", ParseMath1()));
            }
            else if (t.IsName("not") && _t[_i + 1].IsName("in"))
            {
                _i += 2;
                rest.Add(("notin", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, [.. rest], first.Line, first.Column);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Cur.Kind == TokenKind.Operator && Cur.Value is "+" or "-")
        {
            var op = Next();
            left = new BinaryExpr(op.Value, left, ParseConcat(), op.Line, op.Column);
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (Cur.IsOp("~"))
        {
            var op = Next();
            left = new BinaryExpr("~", left, ParseMath2(), op.Line, op.Column);
        }
        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Cur.Kind == TokenKind.Operator && Cur.Value is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(op.Value, left, ParsePow(), op.Line, op.Column);
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(withFilter: true);
        while (Cur.IsOp("**"))
        {
            var op = Next();
            left = new BinaryExpr("**", left, ParseUnary(withFilter: true), op.Line, op.Column);
        }
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        var t = Cur;
        Expr node;
        if (t.IsOp("-") || t.IsOp("+"))
        {
            _i++;
            node = new UnaryExpr(t.Value, ParseUnary(withFilter: false), t.Line, t.Column);
        }
        else node = ParsePostfix(ParsePrimary());
        return withFilter ? ParseFilterTests(node) : node;
    }

    private Expr ParsePrimary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(true, t.Line, t.Column),
                    "false" or "False" => new LiteralExpr(false, t.Line, t.Column),
                    "none" or "None" => new LiteralExpr(null, t.Line, t.Column),
                    _ => new NameExpr(t.Value, t.Line, t.Column),
                };
            case TokenKind.String:
            {
                string s = t.Value;
                while (Cur.Kind == TokenKind.String) s += Next().Value;
                return new LiteralExpr(s, t.Line, t.Column);
            }
            case TokenKind.Integer:
                if (long.TryParse(t.Value, NumberStyles.None, CultureInfo.InvariantCulture, out long l)) return new LiteralExpr(l, t.Line, t.Column);
                throw Error(t, $"integer {t.Value} is too large");
            case TokenKind.Float:
                return new LiteralExpr(double.Parse(t.Value, CultureInfo.InvariantCulture), t.Line, t.Column);
            case TokenKind.Operator when t.Value == "(":
            {
                if (SkipOp(")")) return new ListExpr([], true, t.Line, t.Column);
                var first = ParseExpression();
                if (SkipOp(")")) return first;
                var items = new List<Expr> { first };
                while (SkipOp(","))
                {
                    if (Cur.IsOp(")")) break;
                    items.Add(ParseExpression());
                }
                Expect(TokenKind.Operator, ")");
                return new ListExpr([.. items], true, t.Line, t.Column);
            }
            case TokenKind.Operator when t.Value == "[":
            {
                var items = new List<Expr>();
                while (!Cur.IsOp("]"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Cur.IsOp("]")) break;
                    items.Add(ParseExpression());
                }
                _i++;
                return new ListExpr([.. items], false, t.Line, t.Column);
            }
            case TokenKind.Operator when t.Value == "{":
            {
                var pairs = new List<(Expr, Expr)>();
                while (!Cur.IsOp("}"))
                {
                    if (pairs.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Cur.IsOp("}")) break;
                    var k = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((k, ParseExpression()));
                }
                _i++;
                return new DictExpr([.. pairs], t.Line, t.Column);
            }
            default:
                throw Error(t, $"unexpected {t}");
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var t = Cur;
            if (t.IsOp("."))
            {
                _i++;
                var a = Next();
                if (a.Kind is not (TokenKind.Name or TokenKind.Integer)) throw Error(a, $"expected an attribute name after '.', got {a}");
                node = a.Kind == TokenKind.Integer
                    ? new ItemExpr(node, new LiteralExpr(long.Parse(a.Value, CultureInfo.InvariantCulture), a.Line, a.Column), t.Line, t.Column)
                    : new AttrExpr(node, a.Value, t.Line, t.Column);
            }
            else if (t.IsOp("["))
            {
                _i++;
                node = new ItemExpr(node, ParseSubscript(t), t.Line, t.Column);
                Expect(TokenKind.Operator, "]");
            }
            else if (t.IsOp("("))
                node = ParseCall(node);
            else return node;
        }
    }

    private Expr ParseSubscript(Token at)
    {
        Expr? start = null, stop = null, step = null;
        if (!Cur.IsOp(":")) start = ParseExpression();
        if (Cur.IsOp(","))
        {
            // x[a, b]: the key is the tuple (a, b).
            var items = new List<Expr> { start! };
            while (SkipOp(","))
            {
                if (Cur.IsOp("]")) break;
                items.Add(ParseExpression());
            }
            return new ListExpr([.. items], true, at.Line, at.Column);
        }
        if (!SkipOp(":")) return start!;
        if (!Cur.IsOp("]") && !Cur.IsOp(":")) stop = ParseExpression();
        if (SkipOp(":") && !Cur.IsOp("]")) step = ParseExpression();
        return new SliceExpr(start, stop, step, at.Line, at.Column);
    }

    private (Expr[] Args, (string, Expr)[] Kwargs) ParseArgs()
    {
        Expect(TokenKind.Operator, "(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!Cur.IsOp(")"))
        {
            if (args.Count + kwargs.Count > 0) Expect(TokenKind.Operator, ",");
            if (Cur.IsOp(")")) break;
            if (Cur.Kind == TokenKind.Name && _t[_i + 1].IsOp("="))
            {
                var n = Next();
                _i++;
                kwargs.Add((n.Value, ParseExpression()));
            }
            else
            {
                if (kwargs.Count > 0) throw Error(Cur, "a positional argument follows a keyword argument");
                args.Add(ParseExpression());
            }
        }
        _i++;
        return ([.. args], [.. kwargs]);
    }

    private CallExpr ParseCall(Expr callee)
    {
        var (args, kwargs) = ParseArgs();
        return new CallExpr(callee, args, kwargs, callee.Line, callee.Column);
    }

    private FilterExpr ParseFilter(Expr? value)
    {
        var name = Expect(TokenKind.Name);
        string full = name.Value;
        while (Cur.IsOp(".") && _t[_i + 1].Kind == TokenKind.Name)
        {
            _i++;
            full += "." + Next().Value;
        }
        Expr[] args = [];
        (string, Expr)[] kwargs = [];
        if (Cur.IsOp("(")) (args, kwargs) = ParseArgs();
        return new FilterExpr(value, full, args, kwargs, name.Line, name.Column);
    }

    private Expr ParseFilterTests(Expr node)
    {
        while (true)
        {
            if (Cur.IsOp("|"))
            {
                _i++;
                node = ParseFilter(node);
            }
            else if (Cur.IsName("is"))
            {
                var at = Next();
                bool negated = SkipName("not");
                var name = Expect(TokenKind.Name);
                Expr[] args = [];
                if (Cur.IsOp("(")) args = ParseArgs().Args;
                else if (Cur.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                         || Cur.IsOp("[") || Cur.IsOp("{") || Cur.IsOp("("))
                {
                    if (!(Cur.IsName("else") || Cur.IsName("or") || Cur.IsName("and") || Cur.IsName("if") || Cur.IsName("not") || Cur.IsName("in") || Cur.IsName("is")))
                        args = [ParsePostfix(ParsePrimary())];
                }
                node = new TestExpr(node, name.Value, args, negated, at.Line, at.Column);
            }
            else if (Cur.IsOp("("))
                node = ParseCall(node);
            else return node;
        }
    }
}
