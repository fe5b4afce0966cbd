using System.Security.Cryptography;

namespace Tova.Sessions;

/// <summary>Unguessable ids (128 random bits from the system's CSPRNG, lowercase hex) and their check.</summary>
public static class SessionIds
{
    /// <summary>Longest id a store accepts.</summary>
    public const int MaxLength = 128;

    /// <summary>A new id: <paramref name="prefix"/> followed by 32 hex digits (128 random bits).</summary>
    public static string New(string prefix = "") => prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="id"/> is 1–128 characters of [A-Za-z0-9_-] (safe as a file name and a key).</summary>
    public static void Check(string id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxLength)
            throw new ArgumentException($"a session id has 1 to {MaxLength} characters", nameof(id));
        foreach (char c in id)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
                throw new ArgumentException($"a session id has only letters, digits, '_' and '-'; got '{id}'", nameof(id));
    }
}
