using Tova.Formats;
using Tova.Kernels;

namespace Tova.Cache;

/// <summary>
/// The states of one KV head of one layer: slot i holds a key and a value row, stored as the cache's KV types
/// (<see cref="StateRows"/>: F32, F16, BF16, Q8_0 or Q4_0, quantized once when the state is written), and the
/// original token position. Slots are unordered (a dropped slot is refilled by the newest state or by moving the last
/// slot into it). When every slot is taken, the step's new state waits in the pending slot (index <see cref="Count"/>)
/// until the policy has chosen what to drop, so the stored states never exceed <see cref="Capacity"/>.
/// </summary>
public sealed unsafe class HeadStates
{
    private readonly int _headDim;

    public GgmlType KeyType { get; }
    public GgmlType ValueType { get; }
    /// <summary>Bytes of one key row and one value row.</summary>
    public int KeyRowBytes { get; }
    public int ValueRowBytes { get; }

    public byte[] KeyData = [];         // [capacity, key_row_bytes], pinned
    public byte[] ValueData = [];       // [capacity, value_row_bytes], pinned
    public int[] Positions = [0];       // [capacity + 1]   (index Count: the pending state's position)
    public int[] Tokens = [-1];         // [capacity + 1]   token id per slot (−1: not given)
    public float[] PolicyState = [0];   // [(capacity + 1) · StateWidth]   per-slot bookkeeping of the policy (e.g. H2O sums)
    public float[] Scores = [0];        // [capacity + 1]   the last step's head-averaged attention per slot
    public readonly byte[] PendingKey;   // [key_row_bytes], pinned
    public readonly byte[] PendingValue; // [value_row_bytes], pinned
    public int Count;
    public bool HasPending;

    /// <summary>Floats of policy bookkeeping per slot.</summary>
    public int StateWidth { get; }

    public int HeadDim => _headDim;

    public HeadStates(int headDim, GgmlType keyType = GgmlType.F32, GgmlType valueType = GgmlType.F32, int stateWidth = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(stateWidth, 1);
        _headDim = headDim;
        StateWidth = stateWidth;
        PolicyState = new float[stateWidth];
        KeyType = keyType;
        ValueType = valueType;
        KeyRowBytes = StateRows.RowBytes(keyType, headDim);
        ValueRowBytes = StateRows.RowBytes(valueType, headDim);
        PendingKey = GC.AllocateArray<byte>(KeyRowBytes, pinned: true);
        PendingValue = GC.AllocateArray<byte>(ValueRowBytes, pinned: true);
    }

    public int Capacity => KeyData.Length / KeyRowBytes;

    /// <summary>States attention reads this step: the stored ones plus the pending one.</summary>
    public int Total => Count + (HasPending ? 1 : 0);

    /// <summary>Bytes allocated for stored keys and values.</summary>
    public long Bytes => (long)KeyData.Length + ValueData.Length;

    internal void Resize(int capacity)
    {
        KeyData = Grow(KeyData, capacity * KeyRowBytes);
        ValueData = Grow(ValueData, capacity * ValueRowBytes);
        Array.Resize(ref Positions, capacity + 1);
        Array.Resize(ref Tokens, capacity + 1);
        Array.Resize(ref PolicyState, (capacity + 1) * StateWidth);
        Array.Resize(ref Scores, capacity + 1);
    }

    private static byte[] Grow(byte[] old, int bytes)
    {
        var fresh = GC.AllocateArray<byte>(bytes, pinned: true);
        old.AsSpan(0, Math.Min(old.Length, bytes)).CopyTo(fresh);
        return fresh;
    }

    /// <summary>Stores the new state (rounded to the KV types) in a free slot, or as pending when all are taken.</summary>
    internal void Add(ReadOnlySpan<float> key, ReadOnlySpan<float> value, int position, int token = -1)
    {
        if (HasPending) throw new InvalidOperationException("a pending state was never resolved");
        bool free = Count < Capacity;
        fixed (byte* k = free ? KeyData.AsSpan(Count * KeyRowBytes, KeyRowBytes) : PendingKey)
        fixed (byte* v = free ? ValueData.AsSpan(Count * ValueRowBytes, ValueRowBytes) : PendingValue)
        {
            StateRows.Store(KeyType, key, k);
            StateRows.Store(ValueType, value, v);
        }
        Positions[Count] = position;
        Tokens[Count] = token;
        if (StateWidth == 1) PolicyState[Count] = 0;
        else PolicyState.AsSpan(Count * StateWidth, StateWidth).Clear();
        if (free) Count++;
        else HasPending = true;
    }

    /// <summary>Drops slot <paramref name="slot"/> (index Count = the pending state), keeping a pending state if any.</summary>
    internal void Drop(int slot)
    {
        if (HasPending)
        {
            HasPending = false;
            if (slot == Count) return; // the new state itself is dropped
            PendingKey.CopyTo(KeyData.AsSpan(slot * KeyRowBytes, KeyRowBytes));
            PendingValue.CopyTo(ValueData.AsSpan(slot * ValueRowBytes, ValueRowBytes));
            Move(Count, slot);
            return;
        }
        int last = Count - 1;
        if (slot != last)
        {
            KeyData.AsSpan(last * KeyRowBytes, KeyRowBytes).CopyTo(KeyData.AsSpan(slot * KeyRowBytes, KeyRowBytes));
            ValueData.AsSpan(last * ValueRowBytes, ValueRowBytes).CopyTo(ValueData.AsSpan(slot * ValueRowBytes, ValueRowBytes));
            Move(last, slot);
        }
        Count = last;
    }

    private void Move(int from, int to)
    {
        Positions[to] = Positions[from];
        Tokens[to] = Tokens[from];
        if (StateWidth == 1) PolicyState[to] = PolicyState[from];
        else PolicyState.AsSpan(from * StateWidth, StateWidth).CopyTo(PolicyState.AsSpan(to * StateWidth, StateWidth));
        Scores[to] = Scores[from];
    }

    /// <summary>The stored row of slot i's key (the pending key for i = Count).</summary>
    public ReadOnlySpan<byte> KeyRow(int i) => i < Count ? KeyData.AsSpan(i * KeyRowBytes, KeyRowBytes) : PendingKey;

    /// <summary>The stored row of slot i's value (the pending value for i = Count).</summary>
    public ReadOnlySpan<byte> ValueRow(int i) => i < Count ? ValueData.AsSpan(i * ValueRowBytes, ValueRowBytes) : PendingValue;

    /// <summary>Slot i's key as floats (as stored: rounded to the KV type).</summary>
    public void ReadKey(int i, Span<float> dst) => Quantization.Dequantize(KeyType, KeyRow(i), dst[.._headDim]);

    /// <summary>Slot i's value as floats (as stored: rounded to the KV type).</summary>
    public void ReadValue(int i, Span<float> dst) => Quantization.Dequantize(ValueType, ValueRow(i), dst[.._headDim]);

    /// <summary>Overwrites slot i's value (the pending value for i = Count), rounded to the KV type (merging policies).</summary>
    internal void WriteValue(int i, ReadOnlySpan<float> value)
    {
        fixed (byte* v = i < Count ? ValueData.AsSpan(i * ValueRowBytes, ValueRowBytes) : PendingValue)
            StateRows.Store(ValueType, value[.._headDim], v);
    }
}
