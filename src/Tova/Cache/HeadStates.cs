using Tova.Formats;
using Tova.Kernels;

namespace Tova.Cache;

/// <summary>
/// The states of one KV head of one layer: slot i holds a key and a value row, stored as the cache's KV types
/// (<see cref="StateRows"/>: F32, F16, BF16, Q8_0 or Q4_0, quantized once when the state is written), and the
/// original token position. Slots are unordered (a dropped slot is refilled by the newest state or by moving the last
/// slot into it). When every slot is taken, the step's new state waits in the pending slot (index <see cref="Count"/>)
/// until the policy has chosen what to drop, so the stored states never exceed <see cref="Capacity"/>.
/// Slot i's rows are row <see cref="Offset"/> + i of <see cref="KeyData"/> / <see cref="ValueData"/>: the set's own
/// arrays (offset 0), or, with head-adaptive budgets, the region [Offset, Offset + Capacity) of an arena its layer's
/// KV heads share (<see cref="MultiStateCache"/> moves region boundaries one row at a time).
/// </summary>
public sealed unsafe class HeadStates
{
    private readonly int _headDim;

    public GgmlType KeyType { get; }
    public GgmlType ValueType { get; }
    /// <summary>Bytes of one key row and one value row.</summary>
    public int KeyRowBytes { get; }
    public int ValueRowBytes { get; }
    /// <summary>Hadamard block keys / values are stored rotated in (0 = not rotated; <see cref="Hadamard"/>).</summary>
    public int KeyRotation { get; }
    public int ValueRotation { get; }

    public byte[] KeyData = [];         // [offset + capacity (arena: the layer's rows), key_row_bytes], pinned
    public byte[] ValueData = [];       // [offset + capacity (arena: the layer's rows), value_row_bytes], pinned
    /// <summary>Row of slot 0 in <see cref="KeyData"/> / <see cref="ValueData"/> (0 unless the rows are a shared arena).</summary>
    public int Offset;
    private int _capacity;
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

    public HeadStates(int headDim, GgmlType keyType = GgmlType.F32, GgmlType valueType = GgmlType.F32, int stateWidth = 1,
                      int keyRotation = 0, int valueRotation = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(stateWidth, 1);
        _headDim = headDim;
        KeyRotation = keyRotation;
        ValueRotation = valueRotation;
        StateWidth = stateWidth;
        PolicyState = new float[stateWidth];
        KeyType = keyType;
        ValueType = valueType;
        KeyRowBytes = StateRows.RowBytes(keyType, headDim);
        ValueRowBytes = StateRows.RowBytes(valueType, headDim);
        PendingKey = GC.AllocateArray<byte>(KeyRowBytes, pinned: true);
        PendingValue = GC.AllocateArray<byte>(ValueRowBytes, pinned: true);
    }

    /// <summary>Slots the set may store (its region of the arena with head-adaptive budgets).</summary>
    public int Capacity => _capacity;

    /// <summary>States attention reads this step: the stored ones plus the pending one.</summary>
    public int Total => Count + (HasPending ? 1 : 0);

    /// <summary>Bytes allocated for this set's key and value rows (its region's share of an arena).</summary>
    public long Bytes => (long)_capacity * (KeyRowBytes + ValueRowBytes);

    internal void Resize(int capacity)
    {
        if (Offset != 0) throw new InvalidOperationException("a set in a shared arena is resized by its cache");
        KeyData = Grow(KeyData, capacity * KeyRowBytes);
        ValueData = Grow(ValueData, capacity * ValueRowBytes);
        _capacity = capacity;
        ResizeSlots(capacity);
    }

    /// <summary>Makes the set the region [offset, offset + capacity) of a shared arena, with bookkeeping for up to <paramref name="maxSlots"/> slots.</summary>
    internal void UseArena(byte[] keys, byte[] values, int offset, int capacity, int maxSlots)
    {
        KeyData = keys;
        ValueData = values;
        Offset = offset;
        _capacity = capacity;
        ResizeSlots(maxSlots);
    }

    /// <summary>Places an empty set at the region [offset, offset + capacity) of its arena (restoring a snapshot).</summary>
    internal void SetRegion(int offset, int capacity)
    {
        if (Count != 0 || HasPending || offset < 0 || capacity < 0 || (long)(offset + capacity) * KeyRowBytes > KeyData.Length)
            throw new InvalidOperationException($"cannot place a set of {Count} states at rows [{offset}, {offset + capacity})");
        Offset = offset;
        _capacity = capacity;
    }

    private void ResizeSlots(int slots)
    {
        Array.Resize(ref Positions, slots + 1);
        Array.Resize(ref Tokens, slots + 1);
        Array.Resize(ref PolicyState, (slots + 1) * StateWidth);
        Array.Resize(ref Scores, slots + 1);
    }

    /// <summary>
    /// Moves the region to [newOffset, newOffset + newCapacity), newOffset within one row of <see cref="Offset"/>,
    /// keeping every stored state (Count ≤ newCapacity). One row copy at most: moving up, slot 0's row goes to just
    /// past the last stored row; moving down, the last stored row goes to the new first row (that row, and the row
    /// past the stored ones, must be free in the arena). Slots keep their states; their order rotates by one.
    /// </summary>
    internal void MoveRegion(int newOffset, int newCapacity)
    {
        int shift = newOffset - Offset;
        if (shift is < -1 or > 1 || Count > newCapacity)
            throw new InvalidOperationException($"cannot move a region of {Count} states by {shift} rows to {newCapacity} slots");
        if (shift != 0 && Count > 0)
        {
            int from = shift > 0 ? Offset : Offset + Count - 1, to = shift > 0 ? Offset + Count : newOffset;
            KeyData.AsSpan(from * KeyRowBytes, KeyRowBytes).CopyTo(KeyData.AsSpan(to * KeyRowBytes, KeyRowBytes));
            ValueData.AsSpan(from * ValueRowBytes, ValueRowBytes).CopyTo(ValueData.AsSpan(to * ValueRowBytes, ValueRowBytes));
            bool up = shift > 0;
            RotateOne(Positions.AsSpan(0, Count), up);
            RotateOne(Tokens.AsSpan(0, Count), up);
            RotateOne(Scores.AsSpan(0, Count), up);
            int w = StateWidth;
            if (w == 1) RotateOne(PolicyState.AsSpan(0, Count), up);
            else RotateSlot(PolicyState.AsSpan(0, Count * w), w, up);
        }
        Offset = newOffset;
        _capacity = newCapacity;
    }

    /// <summary>Rotates <paramref name="a"/> by one slot of <paramref name="w"/> floats, left (the first slot becomes the last) or right.</summary>
    private static void RotateSlot(Span<float> a, int w, bool left)
    {
        if (a.Length <= w) return;
        if (w > 256)
        {
            int k = left ? w : a.Length - w; // rotate left by k: reverse both parts, then the whole
            a[..k].Reverse();
            a[k..].Reverse();
            a.Reverse();
            return;
        }
        Span<float> slot = stackalloc float[w];
        if (left)
        {
            a[..w].CopyTo(slot);
            a[w..].CopyTo(a);
            slot.CopyTo(a[^w..]);
        }
        else
        {
            a[^w..].CopyTo(slot);
            a[..^w].CopyTo(a[w..]);
            slot.CopyTo(a);
        }
    }

    /// <summary>Rotates <paramref name="a"/> by one element: left (the first becomes the last) when <paramref name="left"/>, else right.</summary>
    private static void RotateOne<T>(Span<T> a, bool left)
    {
        if (a.Length < 2) return;
        if (left)
        {
            T first = a[0];
            a[1..].CopyTo(a);
            a[^1] = first;
        }
        else
        {
            T last = a[^1];
            a[..^1].CopyTo(a[1..]);
            a[0] = last;
        }
    }

    /// <summary>Stores the pending state in the free slot Count (the region must have one).</summary>
    internal void CommitPending()
    {
        if (!HasPending) return;
        if (Count >= _capacity) throw new InvalidOperationException("no free slot for the pending state");
        PendingKey.CopyTo(KeyData.AsSpan((Offset + Count) * KeyRowBytes, KeyRowBytes));
        PendingValue.CopyTo(ValueData.AsSpan((Offset + Count) * ValueRowBytes, ValueRowBytes));
        HasPending = false;
        Count++;
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
        Span<float> rotated = KeyRotation > 0 || ValueRotation > 0 ? stackalloc float[_headDim] : default;
        fixed (byte* k = free ? KeyData.AsSpan((Offset + Count) * KeyRowBytes, KeyRowBytes) : PendingKey)
        fixed (byte* v = free ? ValueData.AsSpan((Offset + Count) * ValueRowBytes, ValueRowBytes) : PendingValue)
        {
            StateRows.Store(KeyType, Rotated(key, KeyRotation, rotated), k);
            StateRows.Store(ValueType, Rotated(value, ValueRotation, rotated), v);
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
            PendingKey.CopyTo(KeyData.AsSpan((Offset + slot) * KeyRowBytes, KeyRowBytes));
            PendingValue.CopyTo(ValueData.AsSpan((Offset + slot) * ValueRowBytes, ValueRowBytes));
            Move(Count, slot);
            return;
        }
        int last = Count - 1;
        if (slot != last)
        {
            KeyData.AsSpan((Offset + last) * KeyRowBytes, KeyRowBytes).CopyTo(KeyData.AsSpan((Offset + slot) * KeyRowBytes, KeyRowBytes));
            ValueData.AsSpan((Offset + last) * ValueRowBytes, ValueRowBytes).CopyTo(ValueData.AsSpan((Offset + slot) * ValueRowBytes, ValueRowBytes));
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
    public ReadOnlySpan<byte> KeyRow(int i) => i < Count ? KeyData.AsSpan((Offset + i) * KeyRowBytes, KeyRowBytes) : PendingKey;

    /// <summary>The stored row of slot i's value (the pending value for i = Count).</summary>
    public ReadOnlySpan<byte> ValueRow(int i) => i < Count ? ValueData.AsSpan((Offset + i) * ValueRowBytes, ValueRowBytes) : PendingValue;

    /// <summary>Slot i's key as floats (as stored: rounded to the KV type; rotated back when stored rotated).</summary>
    public void ReadKey(int i, Span<float> dst)
    {
        Quantization.Dequantize(KeyType, KeyRow(i), dst[.._headDim]);
        if (KeyRotation > 0) Hadamard.Rotate(dst[.._headDim], KeyRotation);
    }

    /// <summary>Overwrites slot i's value (the pending value for i = Count), rounded to the KV type (merging policies).</summary>
    internal void WriteValue(int i, ReadOnlySpan<float> value)
    {
        Span<float> rotated = ValueRotation > 0 ? stackalloc float[_headDim] : default;
        fixed (byte* v = i < Count ? ValueData.AsSpan((Offset + i) * ValueRowBytes, ValueRowBytes) : PendingValue)
            StateRows.Store(ValueType, Rotated(value[.._headDim], ValueRotation, rotated), v);
    }

    /// <summary>Slot i's value as floats (as stored: rounded to the KV type; rotated back when stored rotated).</summary>
    public void ReadValue(int i, Span<float> dst)
    {
        Quantization.Dequantize(ValueType, ValueRow(i), dst[.._headDim]);
        if (ValueRotation > 0) Hadamard.Rotate(dst[.._headDim], ValueRotation);
    }

    /// <summary><paramref name="x"/> rotated in <paramref name="block"/>s into <paramref name="scratch"/> (x itself when block is 0).</summary>
    private static ReadOnlySpan<float> Rotated(ReadOnlySpan<float> x, int block, Span<float> scratch)
    {
        if (block == 0) return x;
        x.CopyTo(scratch);
        Hadamard.Rotate(scratch, block);
        return scratch;
    }
}
