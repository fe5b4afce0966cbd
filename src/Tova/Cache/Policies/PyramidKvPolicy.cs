namespace Tova.Cache;

/// <summary>
/// PyramidKV (Cai et al. 2024, "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling"):
/// SnapKV's scoring (<see cref="SnapKvPolicy"/>) with the pyramid layer schedule (<see cref="BudgetSchedule.Pyramid"/>:
/// more states in lower layers, the same total; β = 20). Paper defaults: window 32, kernel 5.
/// </summary>
public static class PyramidKvPolicy
{
    public static PolicyDescriptor Descriptor { get; } = new("pyramidkv", "SnapKV scoring with the pyramid layer budgets (more states in lower layers)",
        a => SnapKvPolicy.Create(a, "pyramidkv")) { Options = SnapKvPolicy.SnapOptions, HeadGranularity = true, HeadAdaptive = true, DefaultSchedule = BudgetSchedule.Pyramid };
}
