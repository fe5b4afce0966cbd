namespace Tova.Tests; public class Smoke { [Fact] public void Loads() { LLama.Native.NativeApi.llama_max_devices(); } }
