namespace Tova.Cache;

/// <summary>
/// Whether quantized states are stored rotated (<see cref="Kernels.Hadamard"/>): <see cref="Auto"/> rotates Q8_0 /
/// Q4_0 keys and values in heads of a multiple of 64, as llama.cpp does by default; <see cref="Off"/> stores them as
/// they are (llama.cpp with LLAMA_ATTN_ROT_DISABLE=1). F32, F16 and BF16 states are never rotated.
/// </summary>
public enum KvRotation { Auto, Off }
