namespace Tova.Cache;

/// <summary>
/// The states of one KV head of one layer: slot i holds a key and a value vector and the original token position.
/// Slots are unordered (an evicted slot is filled by moving the last one into it).
/// </summary>
public sealed class HeadStates
{
    public float[] Keys = [];     // [capacity, head_dim]
    public float[] Values = [];   // [capacity, head_dim]
    public int[] Positions = [];  // [capacity]
    public int Count;
    public int Capacity => Positions.Length;

    internal void Resize(int capacity, int headDim)
    {
        Array.Resize(ref Keys, capacity * headDim);
        Array.Resize(ref Values, capacity * headDim);
        Array.Resize(ref Positions, capacity);
    }

    internal void Append(ReadOnlySpan<float> key, ReadOnlySpan<float> value, int position, int headDim)
    {
        key.CopyTo(Keys.AsSpan(Count * headDim, headDim));
        value.CopyTo(Values.AsSpan(Count * headDim, headDim));
        Positions[Count] = position;
        Count++;
    }

    /// <summary>Drops slot <paramref name="slot"/> by moving the last slot into it.</summary>
    internal void Remove(int slot, int headDim)
    {
        int last = Count - 1;
        if (slot != last)
        {
            Keys.AsSpan(last * headDim, headDim).CopyTo(Keys.AsSpan(slot * headDim, headDim));
            Values.AsSpan(last * headDim, headDim).CopyTo(Values.AsSpan(slot * headDim, headDim));
            Positions[slot] = Positions[last];
        }
        Count = last;
    }
}
