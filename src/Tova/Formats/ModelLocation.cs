namespace Tova.Formats;

/// <summary>Where <see cref="ModelLocator"/> found a model.</summary>
public enum ModelSource
{
    /// <summary>A file or folder path given as is.</summary>
    Path,
    /// <summary>Tova's models folder ($TOVA_MODELS, default ~/.cache/tova/models).</summary>
    ModelsFolder,
    /// <summary>The Hugging Face hub cache (models--ORG--NAME/snapshots/REVISION/…).</summary>
    HuggingFace,
    /// <summary>Ollama's store (a manifest naming a GGUF blob).</summary>
    Ollama,
}

/// <summary>A model <see cref="ModelLocator"/> found: the name that resolves to it, its file or folder, and its size in bytes.</summary>
public sealed record ModelLocation(string Name, string Path, ModelSource Source, long Bytes);
