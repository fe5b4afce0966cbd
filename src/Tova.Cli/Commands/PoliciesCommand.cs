using System.CommandLine;
using System.Text.Json;
using Tova.Cache;

namespace Tova.Cli.Commands;

/// <summary>`tova policies`: every known multi-state policy with its description and options (type, default, range).</summary>
public static class PoliciesCommand
{
    public static Command Create()
    {
        var json = CommonOptions.Json();
        var cmd = new Command("policies", "List the multi-state policies (--cache) with their options (--policy-option name=value), descriptions and defaults") { json };
        cmd.SetAction(CommonOptions.Handler(async (parse, output, ct) =>
        {
            var all = PolicyRegistry.All;
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(all.Select(p => new Dictionary<string, object?>
                {
                    ["name"] = p.Name,
                    ["description"] = p.Description,
                    ["head_granularity"] = p.HeadGranularity,
                    ["head_adaptive"] = p.HeadAdaptive,
                    ["granularity"] = p.ForcedGranularity?.ToString().ToLowerInvariant(),
                    ["positions"] = p.ForcedPositions?.ToString().ToLowerInvariant(),
                    ["schedule"] = p.DefaultSchedule.ToString().ToLowerInvariant(),
                    ["options"] = p.Options.Select(o => new Dictionary<string, object?>
                    {
                        ["name"] = o.Name, ["type"] = o.Type.ToString().ToLowerInvariant(), ["default"] = o.Default,
                        ["range"] = o.RangeText, ["description"] = o.Description,
                    }).ToList(),
                })));
                return 0;
            }
            foreach (var p in all)
            {
                var notes = new List<string>();
                if (p.HeadGranularity) notes.Add(p.ForcedGranularity == Granularity.Head ? "per KV head" : "--granularity head");
                if (p.HeadAdaptive) notes.Add("--head-budgets adaptive");
                if (p.ForcedPositions == PositionMode.Renumber) notes.Add("renumbered positions");
                if (p.DefaultSchedule != BudgetSchedule.Uniform) notes.Add($"{p.DefaultSchedule.ToString().ToLowerInvariant()} schedule");
                await output.WriteLineAsync($"{p.Name,-11} {p.Description}{(notes.Count > 0 ? $" [{string.Join("; ", notes)}]" : "")}");
                foreach (var o in p.Options)
                    await output.WriteLineAsync($"    {o.Name + "=" + o.Default,-17} {o.Description} ({o.Type.ToString().ToLowerInvariant()}, {o.RangeText})");
            }
            return 0;
        }));
        return cmd;
    }
}
