namespace Tova.Cache;

/// <summary>Why a snapshot was refused.</summary>
public enum StateSnapshotError
{
    /// <summary>The data ends before the length its header declares (or before a header).</summary>
    Truncated,
    /// <summary>Not a Tova state snapshot (the first 8 bytes are not "TOVASNAP").</summary>
    BadMagic,
    /// <summary>A format version this build does not read.</summary>
    UnsupportedVersion,
    /// <summary>The checksum over the content does not match: the data was damaged.</summary>
    ChecksumMismatch,
    /// <summary>A length, count, position or setting is impossible for the declared sizes.</summary>
    Malformed,
    /// <summary>Saved with another model (fingerprint, shapes or tokenizer differ).</summary>
    ModelMismatch,
    /// <summary>Saved with other cache options than the caller requires.</summary>
    OptionsMismatch,
    /// <summary>The multi-state it describes exceeds the caller's memory limit.</summary>
    TooLarge,
}

/// <summary>A snapshot that cannot be used, with the reason (<see cref="Reason"/>).</summary>
public sealed class StateSnapshotException(StateSnapshotError reason, string message) : Exception(message)
{
    public StateSnapshotError Reason { get; } = reason;
}
