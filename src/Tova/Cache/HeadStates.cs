namespace Tova.Cache;

/// <summary>
/// The states of one KV head of one layer: slot i holds a key and a value vector and the original token position.
/// Slots are unordered (a dropped slot is refilled by the newest state or by moving the last slot into it).
/// When every slot is taken, the step's new state waits in the pending slot (index <see cref="Count"/>) until
/// the policy has chosen what to drop, so the stored states never exceed <see cref="Capacity"/>.
/// </summary>
public sealed class HeadStates
{
    private readonly int _headDim;

    public float[] Keys = [];          // [capacity, head_dim]
    public float[] Values = [];        // [capacity, head_dim]
    public int[] Positions = [0];      // [capacity + 1]   (index Count: the pending state's position)
    public float[] PolicyState = [0];  // [capacity + 1]   per-slot bookkeeping of the policy (e.g. H2O sums)
    public float[] Scores = [0];       // [capacity + 1]   the last step's head-averaged attention per slot
    public readonly float[] PendingKey;   // [head_dim]
    public readonly float[] PendingValue; // [head_dim]
    public int Count;
    public bool HasPending;

    public HeadStates(int headDim)
    {
        _headDim = headDim;
        PendingKey = new float[headDim];
        PendingValue = new float[headDim];
    }

    public int Capacity => Keys.Length / _headDim;

    /// <summary>States attention reads this step: the stored ones plus the pending one.</summary>
    public int Total => Count + (HasPending ? 1 : 0);

    internal void Resize(int capacity)
    {
        Array.Resize(ref Keys, capacity * _headDim);
        Array.Resize(ref Values, capacity * _headDim);
        Array.Resize(ref Positions, capacity + 1);
        Array.Resize(ref PolicyState, capacity + 1);
        Array.Resize(ref Scores, capacity + 1);
    }

    /// <summary>Stores the new state in a free slot, or as pending when all are taken.</summary>
    internal void Add(ReadOnlySpan<float> key, ReadOnlySpan<float> value, int position)
    {
        if (HasPending) throw new InvalidOperationException("a pending state was never resolved");
        if (Count < Capacity)
        {
            key.CopyTo(Keys.AsSpan(Count * _headDim, _headDim));
            value.CopyTo(Values.AsSpan(Count * _headDim, _headDim));
            Positions[Count] = position;
            PolicyState[Count] = 0;
            Count++;
        }
        else
        {
            key.CopyTo(PendingKey);
            value.CopyTo(PendingValue);
            Positions[Count] = position;
            PolicyState[Count] = 0;
            HasPending = true;
        }
    }

    /// <summary>Drops slot <paramref name="slot"/> (index Count = the pending state), keeping a pending state if any.</summary>
    internal void Drop(int slot)
    {
        if (HasPending)
        {
            HasPending = false;
            if (slot == Count) return; // the new state itself is dropped
            PendingKey.CopyTo(Keys.AsSpan(slot * _headDim, _headDim));
            PendingValue.CopyTo(Values.AsSpan(slot * _headDim, _headDim));
            Move(Count, slot);
            return;
        }
        int last = Count - 1;
        if (slot != last)
        {
            Keys.AsSpan(last * _headDim, _headDim).CopyTo(Keys.AsSpan(slot * _headDim, _headDim));
            Values.AsSpan(last * _headDim, _headDim).CopyTo(Values.AsSpan(slot * _headDim, _headDim));
            Move(last, slot);
        }
        Count = last;
    }

    private void Move(int from, int to)
    {
        Positions[to] = Positions[from];
        PolicyState[to] = PolicyState[from];
        Scores[to] = Scores[from];
    }

    /// <summary>The key of slot i (the pending key for i = Count).</summary>
    public ReadOnlySpan<float> Key(int i) => i < Count ? Keys.AsSpan(i * _headDim, _headDim) : PendingKey;

    /// <summary>The value of slot i (the pending value for i = Count).</summary>
    public ReadOnlySpan<float> Value(int i) => i < Count ? Values.AsSpan(i * _headDim, _headDim) : PendingValue;
}
