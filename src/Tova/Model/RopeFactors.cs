namespace Tova.Model;

/// <summary>Per-frequency RoPE divisors that scaling schemes derive from a configuration.</summary>
public static class RopeFactors
{
    /// <summary>
    /// Llama 3's "llama3" scaling ([rope_dims / 2] divisors, as llama.cpp's converter writes rope_freqs): frequencies
    /// whose wavelength is shorter than original_context / high_freq_factor stay, longer than
    /// original_context / low_freq_factor are divided by <paramref name="factor"/>, and those between are blended.
    /// </summary>
    public static float[] Llama3(float theta, int ropeDims, double factor, double lowFreqFactor, double highFreqFactor, int originalContext)
    {
        if (!(factor > 0) || !(lowFreqFactor > 0) || !(highFreqFactor > lowFreqFactor) || originalContext <= 0)
            throw new ArgumentException($"llama3 RoPE scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0 (got {factor}, {lowFreqFactor}, {highFreqFactor}, {originalContext})");
        double lowWavelen = originalContext / lowFreqFactor, highWavelen = originalContext / highFreqFactor;
        var f = new float[ropeDims / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double freq = Math.Pow(theta, -2.0 * i / ropeDims);
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highWavelen) f[i] = 1f;
            else if (wavelen > lowWavelen) f[i] = (float)factor;
            else
            {
                double smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                f[i] = (float)(1 / ((1 - smooth) / factor + smooth));
            }
        }
        return f;
    }
}
