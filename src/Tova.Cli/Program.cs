namespace Tova.Cli;

public static class Program
{
    public static Task<int> Main(string[] args) => TovaCli.RunAsync(args, Console.Out, Console.Error);
}
