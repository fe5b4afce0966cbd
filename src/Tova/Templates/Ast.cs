namespace Tova.Templates;

/// <summary>A node of a parsed template; <see cref="Line"/> and <see cref="Column"/> locate it for errors.</summary>
internal abstract record Node(int Line, int Column);

// Expressions.
internal abstract record Expr(int Line, int Column) : Node(Line, Column);
internal sealed record LiteralExpr(object? Value, int Line, int Column) : Expr(Line, Column);
internal sealed record NameExpr(string Name, int Line, int Column) : Expr(Line, Column);
internal sealed record ListExpr(Expr[] Items, bool Tuple, int Line, int Column) : Expr(Line, Column);
internal sealed record DictExpr((Expr Key, Expr Value)[] Pairs, int Line, int Column) : Expr(Line, Column);
internal sealed record AttrExpr(Expr Target, string Attr, int Line, int Column) : Expr(Line, Column);
internal sealed record ItemExpr(Expr Target, Expr Key, int Line, int Column) : Expr(Line, Column);
internal sealed record SliceExpr(Expr? Start, Expr? Stop, Expr? Step, int Line, int Column) : Expr(Line, Column);
internal sealed record CallExpr(Expr Callee, Expr[] Args, (string Name, Expr Value)[] Kwargs, int Line, int Column) : Expr(Line, Column);
/// <summary><c>value | name(args)</c>; Value is null for the filter of a filter block.</summary>
internal sealed record FilterExpr(Expr? Value, string Name, Expr[] Args, (string Name, Expr Value)[] Kwargs, int Line, int Column) : Expr(Line, Column);
internal sealed record TestExpr(Expr Value, string Name, Expr[] Args, bool Negated, int Line, int Column) : Expr(Line, Column);
internal sealed record UnaryExpr(string Op, Expr Operand, int Line, int Column) : Expr(Line, Column);
internal sealed record BinaryExpr(string Op, Expr Left, Expr Right, int Line, int Column) : Expr(Line, Column);
internal sealed record CompareExpr(Expr First, (string Op, Expr Right)[] Rest, int Line, int Column) : Expr(Line, Column);
internal sealed record CondExpr(Expr Test, Expr Then, Expr? Else, int Line, int Column) : Expr(Line, Column);

// Assignment targets.
internal abstract record Target(int Line, int Column);
internal sealed record NameTarget(string Name, int Line, int Column) : Target(Line, Column);
internal sealed record TupleTarget(string[] Names, int Line, int Column) : Target(Line, Column);
internal sealed record AttrTarget(string Object, string Attr, int Line, int Column) : Target(Line, Column);

// Statements.
internal sealed record TextNode(string Text, int Line, int Column) : Node(Line, Column);
internal sealed record OutputNode(Expr Value, int Line, int Column) : Node(Line, Column);
internal sealed record IfNode((Expr Test, Node[] Body)[] Branches, Node[]? Else, int Line, int Column) : Node(Line, Column);
internal sealed record ForNode(Target Target, Expr Iterable, Expr? Filter, Node[] Body, Node[]? Else, bool Recursive, int Line, int Column) : Node(Line, Column);
internal sealed record SetNode(Target Target, Expr Value, int Line, int Column) : Node(Line, Column);
internal sealed record SetBlockNode(Target Target, FilterExpr[] Filters, Node[] Body, int Line, int Column) : Node(Line, Column);
internal sealed record Param(string Name, Expr? Default);
internal sealed record MacroNode(string Name, Param[] Params, Node[] Body, int Line, int Column) : Node(Line, Column);
internal sealed record CallBlockNode(CallExpr Call, Param[] CallerParams, Node[] Body, int Line, int Column) : Node(Line, Column);
internal sealed record FilterBlockNode(FilterExpr[] Filters, Node[] Body, int Line, int Column) : Node(Line, Column);
/// <summary>A body rendered as it is (transformers' <c>{% generation %}</c>).</summary>
internal sealed record GroupNode(Node[] Body, int Line, int Column) : Node(Line, Column);
internal sealed record BreakNode(int Line, int Column) : Node(Line, Column);
internal sealed record ContinueNode(int Line, int Column) : Node(Line, Column);
