using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Tova.Server;

/// <summary>"Authorization: Bearer KEY" against the server's key, compared in constant time (SHA-256 hashes, FixedTimeEquals).</summary>
internal sealed class ApiKeyCheck(string key)
{
    private readonly byte[] _keyHash = SHA256.HashData(Encoding.UTF8.GetBytes(key));

    public bool Authorised(HttpRequest request)
    {
        string header = request.Headers.Authorization.ToString();
        const string Bearer = "Bearer ";
        string given = header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase) ? header[Bearer.Length..].Trim() : "";
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(given));
        return CryptographicOperations.FixedTimeEquals(hash, _keyHash);
    }
}
