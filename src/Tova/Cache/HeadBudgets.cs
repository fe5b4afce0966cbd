namespace Tova.Cache;

/// <summary>
/// How a layer's budget is shared among its KV heads at head granularity: every head keeps the layer budget
/// (uniform), or the heads share budget × KV heads states by score, so heads hold different numbers of states
/// (adaptive; Ada-KV, Feng et al. 2024).
/// </summary>
public enum HeadBudgets { Uniform, Adaptive }
