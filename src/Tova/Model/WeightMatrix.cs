using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Tova.Formats;
using Tova.Kernels;

// MatVecBatch lives on the dispatching thread's stack, which blocks until the workers finish: passing its address is safe.
#pragma warning disable CS8500

namespace Tova.Model;

/// <summary>
/// A weight matrix used in place: <see cref="Rows"/> rows of <see cref="Columns"/> values each, stored as
/// <see cref="Type"/> at <see cref="Data"/> (inside a memory map, or a copy the model owns: a pinned buffer or its
/// <see cref="WeightArena"/>).
/// y = W·x computes one dot product per row.
/// </summary>
public sealed unsafe class WeightMatrix
{
    public string Name { get; }
    public GgmlType Type { get; }
    public int Rows { get; }
    public int Columns { get; }
    public byte* Data { get; }
    public long RowBytes { get; }

    /// <summary>The pinned buffer holding the data when the model owns a copy (e.g. q/k rows reordered for RoPE).</summary>
    private readonly byte[]? _owned;

    /// <summary>The arena holding the data when the matrix copied it there (kept alive with the matrix).</summary>
    private readonly WeightArena? _arena;

    /// <summary>
    /// A matrix over <paramref name="data"/> (rows in the file's layout, read in place). A type held in row groups
    /// (<see cref="Grouped"/>) is copied: into <paramref name="arena"/> if given (huge pages), else into a pinned array.
    /// </summary>
    public WeightMatrix(string name, GgmlType type, int rows, int columns, byte* data, WeightArena? arena = null)
        : this(name, type, rows, columns, data, null, arena)
    {
    }

    /// <summary>
    /// A matrix over a buffer the matrix keeps alive: <paramref name="pinned"/> must come from
    /// GC.AllocateArray(pinned: true) and hold <paramref name="rows"/> rows of <paramref name="type"/>.
    /// </summary>
    public WeightMatrix(string name, GgmlType type, int rows, int columns, byte[] pinned)
        : this(name, type, rows, columns, (byte*)Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(pinned)), pinned, null)
    {
    }

    private WeightMatrix(string name, GgmlType type, int rows, int columns, byte* data, byte[]? pinned, WeightArena? arena)
    {
        if (!GgmlTypeInfo.IsSupportedWeight(type))
            throw new NotSupportedException($"tensor '{name}' has type {type}, which Tova does not support (supported: {GgmlTypeInfo.SupportedWeightTypesText})");
        Name = name;
        Type = type;
        Rows = rows;
        Columns = columns;
        RowBytes = GgmlTypeInfo.RowBytes(type, columns);
        if (pinned is not null && pinned.LongLength != ByteSize)
            throw new ArgumentException($"tensor '{name}': {rows} rows of {RowBytes} bytes need {ByteSize} bytes, the buffer has {pinned.LongLength}", nameof(pinned));
        _kernel = QuantKernels.For(type);
        _lanes8 = QuantKernels.Lanes8For(type);
        _rowGroups = RowGroups.For(type) is { } layout && rows > 0 && rows % RowGroups.Rows == 0 && (arena is not null || ByteSize <= Array.MaxLength) ? layout : null;
        if (_rowGroups is not null)
        {
            // Rows repacked eight at a time for the group kernels (RowGroups): a copy the matrix owns. Pack writes every byte.
            if (arena is not null)
            {
                _arena = arena;
                Data = arena.Allocate(ByteSize);
            }
            else
            {
                _owned = GC.AllocateArray<byte>(checked((int)ByteSize), pinned: true);
                Data = (byte*)Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(_owned));
            }
            for (int g = 0; g < rows / RowGroups.Rows; g++)
                _rowGroups.Pack(data + (long)g * RowGroups.Rows * RowBytes, RowBytes, SuperBlocks, Data + (long)g * RowGroups.Rows * RowBytes);
        }
        else
        {
            Data = data;
            _owned = pinned;
        }
    }

    /// <summary>The type's eight-token kernel (<see cref="QuantKernels.Lanes8For"/>), or null.</summary>
    private readonly delegate*<byte*, sbyte*, float*, int*, int*, int, float*, long, void> _lanes8;

    /// <summary>The type's integer kernel against 8-bit activations (<see cref="QuantKernels"/>), or null for float types.</summary>
    private readonly delegate*<byte*, sbyte*, float*, int*, short*, int, int, float*, void> _kernel;

    /// <summary>
    /// True if <see cref="Data"/> holds the rows repacked eight at a time (<see cref="RowGroups"/>: a type the table
    /// lists, with a multiple of eight rows) rather than row after row: group g, rows 8g .. 8g + 7, is at Data + 8g·RowBytes.
    /// </summary>
    public bool Grouped => _rowGroups is not null;

    /// <summary>The group layout and kernels when <see cref="Grouped"/>.</summary>
    private readonly RowGroups? _rowGroups;

    /// <summary>Super-blocks (Q4_0: blocks) per row of a grouped matrix (<see cref="RowGroups.BlockValues"/> values each).</summary>
    private int SuperBlocks => Columns / _rowGroups!.BlockValues;

    /// <summary>One token against the group holding row <paramref name="first"/> (a multiple of 8): row first + r's result to y[r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void GroupDot(int first, sbyte* xq, float* xd, int* xl, short* xh, float* y) =>
        _rowGroups!.Dot(Data + (long)first * RowBytes, xq, xd, xl, xh, SuperBlocks, y);

    /// <summary>True if the group layout has a kernel for several tokens (<see cref="GroupTile"/>).</summary>
    internal bool HasGroupTile => _rowGroups is not null && _rowGroups.Tile != null;

    /// <summary>The eight rows of the group holding row <paramref name="first"/> in the file's layout: row first + r to dst + r·RowBytes.</summary>
    internal void UnpackGroup(int first, byte* dst)
    {
        for (int r = 0; r < RowGroups.Rows; r++) _rowGroups!.UnpackRow(Data + (long)first * RowBytes, SuperBlocks, r, dst + r * RowBytes);
    }

    /// <summary>
    /// 1..<see cref="RowGroups.MaxLaneTiles"/> interleaved eight-token tiles (tile g's at xt + g·nb·256, dt, lf, hp + g·nb·8)
    /// against the group holding row <paramref name="first"/>: row first + r's result for token t to y[t·yStride + r].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void GroupLanes(int first, sbyte* xt, float* dt, float* lf, int* hp, int tiles, float* y, long yStride) =>
        _rowGroups!.Lanes(Data + (long)first * RowBytes, xt, dt, lf, hp, SuperBlocks, tiles, y, yStride);

    /// <summary>True if the group layout has a kernel for interleaved eight-token tiles (<see cref="GroupLanes"/>).</summary>
    internal bool HasGroupLanes => _rowGroups is not null && _rowGroups.Lanes != null;

    /// <summary>
    /// 1..<see cref="RowGroups.MaxTokens"/> tokens (token t's activations at xq + t·Columns) against the group holding
    /// row <paramref name="first"/>: row first + r's result for token t to y[t·yStride + r].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void GroupTile(int first, sbyte* xq, float* xd, int* xl, int tokens, float* y, long yStride) =>
        _rowGroups!.Tile(Data + (long)first * RowBytes, xq, xd, xl, SuperBlocks, Columns, tokens, y, yStride);

    /// <summary>True if the data is a copy the matrix owns rather than a view of the model file.</summary>
    public bool OwnsData => _owned is not null || _arena is not null;

    public long ByteSize => RowBytes * Rows;

    /// <summary>Copies row <paramref name="row"/> as floats into <paramref name="dst"/> (length <see cref="Columns"/>).</summary>
    public void ReadRow(int row, Span<float> dst)
    {
        if (!Grouped)
        {
            Quantization.Dequantize(Type, new ReadOnlySpan<byte>(Data + row * RowBytes, (int)RowBytes), dst[..Columns]);
            return;
        }
        // One super-block at a time: no buffer as long as the row (this runs per token for a grouped embedding table).
        int blockBytes = _rowGroups!.BlockBytes;
        byte* blk = stackalloc byte[blockBytes];
        byte* group = Data + (long)(row & ~7) * RowBytes;
        for (int sb = 0; sb < SuperBlocks; sb++)
        {
            _rowGroups.UnpackRow(group + (long)sb * _rowGroups.GroupBlockBytes, 1, row & 7, blk);
            Quantization.Dequantize(Type, new ReadOnlySpan<byte>(blk, blockBytes), dst.Slice(sb * _rowGroups.BlockValues, _rowGroups.BlockValues));
        }
    }

    /// <summary>Copies row <paramref name="row"/>'s bytes, in the file's layout, into <paramref name="dst"/> (length <see cref="RowBytes"/>).</summary>
    public void ReadRowBytes(int row, Span<byte> dst)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"tensor '{Name}' has {Rows} rows");
        if (dst.Length < RowBytes) throw new ArgumentException($"a row of '{Name}' has {RowBytes} bytes, the span {dst.Length}", nameof(dst));
        fixed (byte* p = dst)
        {
            if (_rowGroups is not null) _rowGroups.UnpackRow(Data + (long)(row & ~7) * RowBytes, SuperBlocks, row & 7, p);
            else Buffer.MemoryCopy(Data + (long)row * RowBytes, p, RowBytes, RowBytes);
        }
    }

    /// <summary>True if rows multiply 8-bit activations with integer dot products (every quantized type; <see cref="QuantKernels"/>).</summary>
    public bool UsesQ8Activations => _kernel != null;

    /// <summary>One output row: float activations, or their 8-bit quantization for the integer-kernel types.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal float DotRow(int r, float* x, sbyte* xq, float* xd, int* xl, short* xh)
    {
        if (Grouped) return GroupedRow(r, x, xq, xd, xl, xh);
        byte* row = Data + r * RowBytes;
        return Type switch
        {
            GgmlType.Q4_0 when xq != null => IntDot.Q4_0(row, xq, xd, xl, Columns / Quantization.QK),
            GgmlType.Q8_0 when xq != null => IntDot.Q8_0(row, xq, xd, Columns / Quantization.QK),
            _ when xq != null && _kernel != null => KernelRow(row, xq, xd, xl, xh),
            _ => RowDot.Dot(Type, row, x, Columns),
        };
    }

    /// <summary>Row r of a <see cref="Grouped"/> matrix: its group's kernel, or the row put back in the file's layout for float activations.</summary>
    private float GroupedRow(int r, float* x, sbyte* xq, float* xd, int* xl, short* xh)
    {
        if (xq != null)
        {
            float* y = stackalloc float[RowGroups.Rows];
            GroupDot(r & ~7, xq, xd, xl, xh, y);
            return y[r & 7];
        }
        Span<byte> bytes = RowBytes <= 16384 ? stackalloc byte[(int)RowBytes] : new byte[RowBytes];
        ReadRowBytes(r, bytes);
        fixed (byte* row = bytes) return RowDot.Dot(Type, row, x, Columns);
    }

    private float KernelRow(byte* row, sbyte* xq, float* xd, int* xl, short* xh)
    {
        float y;
        _kernel(row, xq, xd, xl, xh, Columns, 1, &y);
        return y;
    }

    /// <summary>
    /// One row against 1..<see cref="IntDot.MaxTile"/> tokens of 8-bit activations (token t at xq + t·Columns, its
    /// block scales at xd + t·Columns/32, its 8·Σq at xl + t·Columns/32, its per-16 sums at xh + t·Columns/16);
    /// integer-kernel types only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Tile(byte* row, sbyte* xq, float* xd, int* xl, short* xh, int tokens, float* outs) => _kernel(row, xq, xd, xl, xh, Columns, tokens, outs);

    /// <summary>True for the types whose prompts run eight tokens per SIMD vector (<see cref="Lanes8"/>).</summary>
    internal bool UsesLanes => _lanes8 != null;

    /// <summary>
    /// True for the matrices whose prompts run <see cref="WideDot"/> against sixteen tokens widened to int16
    /// (<see cref="TokenGroups.Int16"/>): Q8_0 rows, and groups the table widens (<see cref="RowGroups.Widen"/>: Q8_0, IQ4_NL).
    /// </summary>
    internal bool UsesWide => Grouped ? _rowGroups!.Widen != null : Type == GgmlType.Q8_0;

    /// <summary>The group holding row <paramref name="first"/> widened for <see cref="WideDot.Q8_0Rows8x16"/> (<see cref="RowGroups.Widen"/>).</summary>
    internal void WidenGroup(int first, short* ws, float* dws) => _rowGroups!.Widen(Data + (long)first * RowBytes, Columns / Quantization.QK, ws, dws);

    /// <summary>True for the types whose prompts run sixteen tokens per 512-bit vector on the bytes layout (<see cref="TokenGroups.Bytes"/>).</summary>
    internal bool UsesLanes16 => (Type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q6_K) && !HasGroupLanes;

    /// <summary>
    /// One row against a sixteen-token group (bytes layout; per-16 sums h16 for Q6_K), token t's result to
    /// y[t·stride]; <see cref="UsesLanes16"/> types only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Lanes16(byte* row, sbyte* x16, float* d16, int* l16, int* h16, float* y, long stride)
    {
        switch (Type)
        {
            case GgmlType.Q4_0: IntDot.Q4_0Lanes16(row, x16, d16, l16, Columns / Quantization.QK, y, stride); break;
            case GgmlType.Q4_K: KQuantDot.Q4_KLanes16(row, x16, d16, l16, Columns / KQuants.QK_K, y, stride); break;
            default: KQuantDot.Q6_KLanes16(row, x16, d16, h16, Columns / KQuants.QK_K, y, stride); break;
        }
    }

    /// <summary>
    /// One row against the eight tokens of an interleaved tile (<see cref="Q8Activations.Interleave8"/>; per-16 sums
    /// from <see cref="Q8Activations.HalfSums8"/> for Q6_K, Q2_K and Q3_K), token t's result to y[t·stride];
    /// <see cref="UsesLanes"/> types only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Lanes8(byte* row, sbyte* xt, float* dt, int* lt, int* ht, float* y, long stride) => _lanes8(row, xt, dt, lt, ht, Columns, y, stride);

    /// <summary>y[Rows] = W · x[Columns], rows split across the pool (x quantized to 8 bits first for the integer-kernel types).</summary>
    public void MatVec(WorkerPool pool, float* x, float* y, Q8Activations? scratch = null)
    {
        var batch = new MatMulBatch();
        batch.Add(this, y);
        batch.Run(pool, x, 1, scratch);
    }

    /// <summary>Y[b, Rows] = W · X[b, Columns] for b &lt; <paramref name="batch"/>, each weight row read once.</summary>
    public void MatMul(WorkerPool pool, float* x, float* y, int batch, Q8Activations? scratch = null)
    {
        var mm = new MatMulBatch();
        mm.Add(this, y);
        mm.Run(pool, x, batch, scratch);
    }
}

/// <summary>
/// Up to three matrices that read the same inputs (q/k/v, or gate/up), multiplied in one dispatch so the workers
/// are woken once: Y_m[b, ·] = W_m · X[b, ·] for b &lt; batch. Each weight row is read once for the whole batch.
/// A plain struct: building and running it allocates nothing.
/// </summary>
public unsafe struct MatMulBatch
{
    private WeightMatrix? _m0, _m1, _m2;
    private float* _y0, _y1, _y2;   // [batch, rows_m]
    private int _count, _rows0, _rows01, _total, _batch, _cols, _nb;
    private float* _x;              // [batch, cols]
    private sbyte* _xq;             // [batch, cols]
    private float* _xd;             // [batch, cols / 32]
    private int* _xl;               // [batch, cols / 32]
    private short* _xh;             // [batch, cols / 16]
    private int _tiles;             // eight-token tiles with interleaved activations (lanes types, batch ≥ 8)
    private bool _halfSums;         // tiles also need per-16 sums (Q6_K, Q2_K, Q3_K)
    private Q8Activations? _scratch;
    private sbyte* _xt;             // [tiles, cols / 32, 8, 8, 4]
    private float* _dt;             // [tiles, cols / 32, 8]
    private int* _lt;               // [tiles, cols / 32, 8]
    private float* _lf;             // [tiles, cols / 32, 8]  _lt as floats
    private int* _hp;               // [tiles, cols / 32, 8]  per-16 sums in int16 pairs (Q6_K groups)
    private int* _ht;               // [tiles, cols / 16, 8]  (Q6_K, Q2_K, Q3_K)
    private int _groups;            // sixteen-token groups (AVX-512, batch ≥ 16): int16 for Q8_0, bytes for Q4_K
    private TokenGroups _layouts;
    private bool _grouped;          // a matrix holds rows in groups of eight (WeightMatrix.Grouped): chunks start at multiples of 8
    private short* _q16;            // [groups, cols / 32, 16, 16, 2]
    private sbyte* _t16;            // [groups, cols / 32, 8, 16, 4]
    private float* _d16;            // [groups, cols / 32, 16]
    private int* _lt16;             // [groups, cols / 32, 16]
    private int* _ht16;             // [groups, cols / 16, 16]  (Q6_K)


    /// <summary>Work per chunk below which waking another thread costs more than it saves.</summary>
    private const int MinMacsPerChunk = 1 << 16;

    public void Add(WeightMatrix m, float* y)
    {
        if (_count > 0 && m.Columns != _m0!.Columns) throw new ArgumentException("matrices of a batch must share their input");
        switch (_count++)
        {
            case 0: _m0 = m; _y0 = y; _rows0 = m.Rows; _rows01 = m.Rows; break;
            case 1: _m1 = m; _y1 = y; _rows01 = _rows0 + m.Rows; break;
            case 2: _m2 = m; _y2 = y; break;
            default: throw new InvalidOperationException("at most three matrices per batch");
        }
        _total += m.Rows;
        _grouped |= m.Grouped;
    }

    /// <summary>Multiplies <paramref name="batch"/> input rows x[b·cols .. (b+1)·cols).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(WorkerPool pool, float* x, int batch, Q8Activations? scratch)
    {
        _x = x;
        _batch = batch;
        _cols = _m0!.Columns;
        _nb = _cols / Quantization.QK;
        bool q8 = _m0.UsesQ8Activations || _m1 is { UsesQ8Activations: true } || _m2 is { UsesQ8Activations: true };
        if (q8 && _cols % Quantization.QK == 0)
        {
            scratch ??= new Q8Activations();
            scratch.Reserve(batch * _cols);
            bool lanes = _m0.UsesLanes || _m1 is { UsesLanes: true } || _m2 is { UsesLanes: true };
            _tiles = lanes ? scratch.ReserveTiles(batch, _cols) : 0;
            _halfSums = _tiles > 0 && (QuantKernels.LanesNeedHalfSums(_m0.Type) || (_m1 is { } m1 && QuantKernels.LanesNeedHalfSums(m1.Type))
                                       || (_m2 is { } m2 && QuantKernels.LanesNeedHalfSums(m2.Type)));
            if (_halfSums) scratch.ReserveHalfSums(batch, _cols);
            _layouts = TokenGroups.None;
            if (_tiles > 0 && WideDot.IsSupported)
            {
                if (_m0.UsesWide || _m1 is { UsesWide: true } || _m2 is { UsesWide: true }) _layouts |= TokenGroups.Int16;
                if (_m0.UsesLanes16 || _m1 is { UsesLanes16: true } || _m2 is { UsesLanes16: true }) _layouts |= TokenGroups.Bytes;
                if (_halfSums && (_layouts & TokenGroups.Bytes) != 0) _layouts |= TokenGroups.HalfSums;
            }
            _groups = scratch.ReserveGroups(batch, _cols, _layouts);
            _scratch = scratch;
            // Quantizing (and interleaving, widening) the inputs, eight rows per work item (sixteen with widening):
            // on the pool for prompts, where it was the largest serial step between the matrix products.
            int groups = _groups > 0 ? (batch + 15) / 16 : (batch + 7) / 8;
            fixed (MatMulBatch* self = &this)
            {
                if (groups > 1) pool.For(groups, 1, &Prepare, (nint)self);
                else Prepare((nint)self, 0, groups);
            }
            fixed (sbyte* q = scratch.Q, xt = scratch.T, t16 = scratch.T16)
            fixed (float* d = scratch.D, dt = scratch.DT, lf = scratch.LF, d16 = scratch.D16)
            fixed (int* l = scratch.L, lt = scratch.LT, ht = scratch.HT, hp = scratch.HP, lt16 = scratch.LT16, ht16 = scratch.HT16)
            fixed (short* q16 = scratch.Q16, h = scratch.H)
            {
                _xq = q; _xd = d; _xl = l; _xh = h;
                _xt = xt; _dt = dt; _lt = lt; _lf = lf; _ht = ht; _hp = hp;
                _q16 = q16; _t16 = t16; _d16 = d16; _lt16 = lt16; _ht16 = ht16;
                Dispatch(pool);
            }
        }
        else
        {
            _xq = null;
            Dispatch(pool);
        }
    }

    /// <summary>
    /// Quantizes input rows 8g .. 8g + 7 (16g .. 16g + 15 with widening) for each item g in [start, end), then
    /// interleaves its full tiles and widens its full sixteen-token group.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Prepare(nint ctx, int start, int end)
    {
        ref var b = ref *(MatMulBatch*)ctx;
        int tilesPerItem = b._groups > 0 ? 2 : 1;
        for (int g = start; g < end; g++)
        {
            int r0 = g * 8 * tilesPerItem, r1 = Math.Min(b._batch, r0 + 8 * tilesPerItem);
            b._scratch!.QuantizeBlocks(b._x, r0 * b._nb, r1 * b._nb);
            int t0 = g * tilesPerItem, t1 = Math.Min(b._tiles, t0 + tilesPerItem);
            if (t0 < t1)
            {
                b._scratch.InterleaveTiles(t0, t1, b._cols);
                if (b._halfSums) b._scratch.HalfSumTiles(t0, t1, b._cols);
            }
            if (g < b._groups) b._scratch.BuildGroups(g, g + 1, b._cols);
        }
    }

    private void Dispatch(WorkerPool pool)
    {
        fixed (MatMulBatch* self = &this)
            pool.For(_total, Math.Max(1, MinMacsPerChunk / (_cols * _batch)), &Rows, (nint)self,
                     _grouped ? RowGroups.Rows : _groups > 0 && (_layouts & TokenGroups.Int16) != 0 ? WideDot.Rows : 1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]

    private static void Rows(nint ctx, int start, int end)
    {
        ref var b = ref *(MatMulBatch*)ctx;
        if (b._batch == 1)
        {
            SingleTokenRows(ref b, start, end);
            return;
        }
        float* outs = stackalloc float[16];
        float* tile = stackalloc float[Math.Max(RowGroups.MaxTokens, 8 * RowGroups.MaxLaneTiles) * RowGroups.Rows];
        for (int r = start; r < end; r++)
        {
            WeightMatrix m;
            float* y;
            int row, rows;
            if (r < b._rows0) { m = b._m0!; y = b._y0; row = r; rows = b._rows0; }
            else if (r < b._rows01) { m = b._m1!; y = b._y1; row = r - b._rows0; rows = b._rows01 - b._rows0; }
            else { m = b._m2!; y = b._y2; row = r - b._rows01; rows = b._total - b._rows01; }
            int i = 0;
            if (m.Type == GgmlType.F32 && b._batch >= 4 && row + 4 <= rows && r + 4 <= end)
            {
                // Four rows by four tokens: each loaded vector feeds four FMAs (same sums as FloatDot.Row).
                float* w = (float*)(m.Data + row * m.RowBytes);
                for (; i + 4 <= b._batch; i += 4)
                {
                    FloatDot.Tile4x4(w, b._cols, b._x + i * b._cols, b._cols, b._cols, outs);
                    for (int t = 0; t < 4; t++)
                        for (int k = 0; k < 4; k++) y[(i + t) * rows + row + k] = outs[t * 4 + k];
                }
                for (; i < b._batch; i++)
                    for (int k = 0; k < 4; k++) y[i * rows + row + k] = FloatDot.Row(w + k * b._cols, b._x + i * b._cols, b._cols);
                r += 3;
                continue;
            }
            if (b._xq != null && m.UsesQ8Activations)
            {
                // A block of rows of this matrix against each group of tokens in turn, so that the group's activations
                // stay in the L1 cache across the block's rows instead of streaming from L2 once per row.
                int count = Math.Min(Math.Min(RowBlock(m.RowBytes), end - r), rows - row);
                byte* w0 = m.Data + row * m.RowBytes;
                if (m.Grouped)
                {
                    // Rows up to the end of their group of eight: the interleaved eight-token tiles by the group's lane
                    // kernel where it has one (up to four tiles a call), the other tokens by its tile kernel, up to
                    // sixteen a call (each super-block's weights unpacked once per call), or else one at a time; a
                    // group cut by the bounds goes through tile. Without either kernel, prompts put the group back in
                    // the file's layout (a per-thread buffer) for the row kernels below.
                    int first = row & ~7;
                    count = Math.Min(Math.Min(first + RowGroups.Rows - row, end - r), rows - row);
                    if (m.HasGroupTile || m.HasGroupLanes || b._batch < 8)
                    {
                        bool whole = count == RowGroups.Rows;
                        if (whole && b._groups > 0 && (b._layouts & TokenGroups.Int16) != 0 && m.UsesWide)
                        {
                            // Q8_0, IQ4_NL: the group widened to int16 once, then Q8_0's kernel per sixteen-token group.
                            WideDot.RowScratch(b._nb, out short* ws, out float* dws);
                            m.WidenGroup(first, ws, dws);
                            for (int h = 0; h < b._groups; h++)
                                WideDot.Q8_0Rows8x16(ws, dws, b._q16 + (long)h * b._nb * 512, b._d16 + h * b._nb * 16, b._nb, y + (long)h * 16 * rows + row, rows);
                            i = 16 * b._groups;
                        }
                        if (m.HasGroupLanes)
                            for (int tg = 0, n; tg < b._tiles; tg += n, i += 8 * n)
                            {
                                n = Math.Min(RowGroups.MaxLaneTiles, b._tiles - tg);
                                m.GroupLanes(first, b._xt + (long)tg * b._nb * 256, b._dt + tg * b._nb * 8, b._lf + tg * b._nb * 8, b._hp + tg * b._nb * 8, n,
                                             whole ? y + (long)i * rows + row : tile, whole ? rows : RowGroups.Rows);
                                if (!whole) CopyRows(tile, 8 * n, y + (long)i * rows + row, rows, row - first, count);
                            }
                        for (int n; i < b._batch; i += n)
                        {
                            float* dst = whole ? y + (long)i * rows + row : tile;
                            long stride = whole ? rows : RowGroups.Rows;
                            n = m.HasGroupTile ? Math.Min(RowGroups.MaxTokens, b._batch - i) : 1;
                            if (m.HasGroupTile) m.GroupTile(first, b._xq + i * b._cols, b._xd + i * b._nb, b._xl + i * b._nb, n, dst, stride);
                            else m.GroupDot(first, b._xq + i * b._cols, b._xd + i * b._nb, b._xl + i * b._nb, b._xh + i * b._nb * 2, dst);
                            if (!whole) CopyRows(tile, n, y + (long)i * rows + row, rows, row - first, count);
                        }
                        r += count - 1;
                        continue;
                    }
                    byte* fileRows = GroupScratch(RowGroups.Rows * m.RowBytes);
                    m.UnpackGroup(first, fileRows);
                    w0 = fileRows + (row - first) * m.RowBytes;
                }
                int g = 0;
                if (b._groups > 0 && (b._layouts & TokenGroups.Bytes) != 0 && m.UsesLanes16)
                {
                    // Sixteen tokens per 512-bit vector, then the tiles left over.
                    for (int h = 0; h < b._groups; h++)
                        for (int k = 0; k < count; k++)
                            m.Lanes16(w0 + k * m.RowBytes, b._t16 + (long)h * b._nb * 512, b._d16 + h * b._nb * 16, b._lt16 + h * b._nb * 16,
                                      b._ht16 + h * b._nb * 32, y + (long)h * 16 * rows + row + k, rows);
                    g = 2 * b._groups;
                    i = 16 * b._groups;
                }
                else if (b._groups > 0 && (b._layouts & TokenGroups.Int16) != 0 && m.Type == GgmlType.Q8_0)
                {
                    // Eight rows widened to int16 once, against each sixteen-token group (WideDot); a part of eight at
                    // a chunk's or matrix's end is left to the eight-lane loop below, over all the tiles.
                    count = Math.Min(Math.Min(WideDot.Rows, end - r), rows - row);
                    if (count == WideDot.Rows)
                    {
                        WideDot.RowScratch(b._nb, out short* ws, out float* dws);
                        WideDot.WidenRows8(w0, m.RowBytes, b._nb, ws, dws);
                        // The next eight rows are fetched into L2 a share per group while the kernels run: read cold
                        // from the memory map, they stall the widening (+2–3 % on 110M prompts; within noise whether
                        // fetched all at once or spread).
                        long span = WideDot.Rows * m.RowBytes, share = (span / b._groups + 63) & ~63L;
                        byte* next = w0 + span;
                        for (int h = 0; h < b._groups; h++, next += share)
                        {
                            for (long o = 0; o < share; o += 64) Sse.Prefetch1(next + o);
                            WideDot.Q8_0Rows8x16(ws, dws, b._q16 + (long)h * b._nb * 512, b._d16 + h * b._nb * 16, b._nb, y + (long)h * 16 * rows + row, rows);
                        }
                        g = 2 * b._groups;
                        i = 16 * b._groups;
                    }
                }
                // Eight tokens per SIMD vector (interleaved activations), then tiles of up to eight tokens: each group
                // of weight blocks is loaded (and unpacked) once for all of them.
                if (m.UsesLanes)
                    for (; g < b._tiles; g++, i += 8)
                        for (int k = 0; k < count; k++)
                            m.Lanes8(w0 + k * m.RowBytes, b._xt + (long)g * b._nb * 256, b._dt + g * b._nb * 8, b._lt + g * b._nb * 8, b._ht + g * b._nb * 16,
                                     y + (long)i * rows + row + k, rows);
                for (; i < b._batch; i += IntDot.MaxTile)
                {
                    int n = Math.Min(IntDot.MaxTile, b._batch - i);
                    for (int k = 0; k < count; k++)
                    {
                        m.Tile(w0 + k * m.RowBytes, b._xq + i * b._cols, b._xd + i * b._nb, b._xl + i * b._nb, b._xh + i * b._nb * 2, n, outs);
                        for (int t = 0; t < n; t++) y[(i + t) * rows + row + k] = outs[t];
                    }
                }
                r += count - 1;
                continue;
            }
            for (; i < b._batch; i++)
                y[i * rows + row] = m.DotRow(row, b._x + i * b._cols, null, null, null, null);
        }
    }

    /// <summary>Rows [from, from + count) of each of <paramref name="tokens"/> groups' results (eight per token in src) to y[t·stride + k].</summary>
    private static void CopyRows(float* src, int tokens, float* y, long stride, int from, int count)
    {
        for (int t = 0; t < tokens; t++)
            for (int k = 0; k < count; k++) y[t * stride + k] = src[t * RowGroups.Rows + from + k];
    }

    [ThreadStatic] private static byte[]? t_group;

    /// <summary>This thread's buffer of at least <paramref name="bytes"/> bytes for a group of rows in the file's layout.</summary>
    private static byte* GroupScratch(long bytes)
    {
        if (t_group is null || t_group.Length < bytes) t_group = GC.AllocateArray<byte>((int)bytes, pinned: true);
        return (byte*)Unsafe.AsPointer(ref t_group[0]);
    }

    /// <summary>Rows per block of the batched loop: as many as fit in about 16 KB (1..16).</summary>
    private static int RowBlock(long rowBytes) => (int)Math.Clamp(16384 / rowBytes, 1, 16);

    /// <summary>Decode (one token): runs of rows of one matrix go straight to the row kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SingleTokenRows(ref MatMulBatch b, int start, int end)
    {
        float* y8 = stackalloc float[RowGroups.Rows];
        int r = start;
        while (r < end)
        {
            WeightMatrix m;
            float* y;
            int first, stop;
            if (r < b._rows0) { m = b._m0!; y = b._y0; first = 0; stop = b._rows0; }
            else if (r < b._rows01) { m = b._m1!; y = b._y1; first = b._rows0; stop = b._rows01; }
            else { m = b._m2!; y = b._y2; first = b._rows01; stop = b._total; }
            stop = Math.Min(stop, end);
            long rowBytes = m.RowBytes;
            byte* w = m.Data + (r - first) * rowBytes;
            y -= first;
            if (b._xq != null && m.Grouped)
            {
                // Whole groups straight to the group kernel; a group cut by the chunk (or matrix) bounds through y8.
                while (r < stop)
                {
                    int local = r - first, g0 = local & ~7;
                    if (local == g0 && r + RowGroups.Rows <= stop)
                    {
                        m.GroupDot(g0, b._xq, b._xd, b._xl, b._xh, y + r);
                        r += RowGroups.Rows;
                        continue;
                    }
                    m.GroupDot(g0, b._xq, b._xd, b._xl, b._xh, y8);
                    for (; r < stop && r - first < g0 + RowGroups.Rows; r++) y[r] = y8[r - first - g0];
                }
            }
            else if (b._xq != null && m.Type == GgmlType.Q4_0)
                for (; r < stop; r++, w += rowBytes) y[r] = IntDot.Q4_0(w, b._xq, b._xd, b._xl, b._nb);
            else if (b._xq != null && m.Type == GgmlType.Q8_0)
                for (; r < stop; r++, w += rowBytes) y[r] = IntDot.Q8_0(w, b._xq, b._xd, b._nb);
            else
                for (; r < stop; r++) y[r] = m.DotRow(r - first, b._x, b._xq, b._xd, b._xl, b._xh);
        }
    }
}
