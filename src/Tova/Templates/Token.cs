namespace Tova.Templates;

internal enum TokenKind
{
    Text,
    VariableBegin, VariableEnd,
    BlockBegin, BlockEnd,
    Name, String, Integer, Float, Operator,
    Eof,
}

/// <summary>A lexed token: its text (for strings, the unescaped value) and where it starts (1-based line and column).</summary>
internal readonly record struct Token(TokenKind Kind, string Value, int Line, int Column)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;
    public bool IsName(string name) => Kind == TokenKind.Name && Value == name;
    public bool IsOp(string op) => Kind == TokenKind.Operator && Value == op;
    public override string ToString() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.Text => "text",
        TokenKind.String => $"string '{Value}'",
        _ => $"'{Value}'",
    };
}
