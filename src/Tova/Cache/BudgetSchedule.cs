namespace Tova.Cache;

/// <summary>How a total of budget × layers states is shared among layers.</summary>
public enum BudgetSchedule
{
    /// <summary>Every layer keeps the budget.</summary>
    Uniform,

    /// <summary>
    /// PyramidKV (Cai et al. 2024): budgets fall linearly from the first layer to the last — from 2B − B/β to B/β
    /// (β = 20) — adjusted so the total is exactly budget × layers.
    /// </summary>
    Pyramid,
}
