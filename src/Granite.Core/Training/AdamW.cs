using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Granite.Core.Training;

/// <summary>
/// AdamW (decoupled weight decay) over named parameters; parameters whose names match <see cref="IsNoDecay"/> (norms,
/// <c>A_log</c>, <c>D</c>, <c>dt_bias</c>, embeddings, biases) get no weight decay. Moments are float32 tensors that
/// can be saved and restored for resuming.
/// </summary>
internal sealed class AdamW : IDisposable
{
    private readonly (string Name, Parameter P, Tensor M, Tensor V, bool Decay)[] _slots;

    public AdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, double beta1 = 0.9, double beta2 = 0.95, double eps = 1e-8, double weightDecay = 0.1)
    {
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        using var noGrad = torch.no_grad();
        _slots = parameters.Select(p => (p.Name, p.Parameter,
            torch.zeros_like(p.Parameter).DetachFromDisposeScope(),
            torch.zeros_like(p.Parameter).DetachFromDisposeScope(),
            !IsNoDecay(p.Name))).ToArray();
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }

    /// <summary>Optimizer steps taken (bias correction uses it).</summary>
    public long Step { get; set; }

    /// <summary>Names of the parameters with weight decay.</summary>
    public IEnumerable<string> DecayedNames => _slots.Where(s => s.Decay).Select(s => s.Name);

    /// <summary>No decay for norms, Mamba's A_log / D / dt_bias, the embeddings and biases.</summary>
    public static bool IsNoDecay(string name) =>
        name.Contains("norm", StringComparison.Ordinal) || name.EndsWith(".A_log", StringComparison.Ordinal)
        || name.EndsWith(".D", StringComparison.Ordinal) || name.EndsWith(".dt_bias", StringComparison.Ordinal)
        || name.Contains("embed_tokens", StringComparison.Ordinal) || name.EndsWith(".bias", StringComparison.Ordinal);

    /// <summary>Global L2 norm of all gradients; when above <paramref name="maxNorm"/> (&gt; 0) gradients are scaled down to it.</summary>
    public double ClipGradients(double maxNorm)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        double sq = 0;
        foreach (var s in _slots)
        {
            var g = s.P.grad;
            if (g is null) continue;
            sq += g.to_type(ScalarType.Float64).square().sum().item<double>();
        }
        double norm = Math.Sqrt(sq);
        if (maxNorm > 0 && norm > maxNorm)
        {
            double f = maxNorm / (norm + 1e-6);
            foreach (var s in _slots) s.P.grad?.mul_(f);
        }
        return norm;
    }

    /// <summary>One update with learning rate <paramref name="lr"/>; gradients are then zeroed.</summary>
    public void Update(double lr)
    {
        Step++;
        double bc1 = 1 - Math.Pow(Beta1, Step), bc2 = 1 - Math.Pow(Beta2, Step);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var s in _slots)
        {
            var g = s.P.grad;
            if (g is null) continue;
            s.M.mul_(Beta1).add_(g, alpha: 1 - Beta1);
            s.V.mul_(Beta2).addcmul_(g, g, value: 1 - Beta2);
            if (s.Decay && WeightDecay > 0) s.P.mul_(1 - lr * WeightDecay);
            var denom = (s.V / bc2).sqrt_().add_(Eps);
            s.P.addcdiv_(s.M, denom, value: -lr / bc1);
        }
        ZeroGrad();
    }

    public void ZeroGrad()
    {
        foreach (var s in _slots)
        {
            var g = s.P.grad;
            if (g is null) continue;
            using var noGrad = torch.no_grad();
            g.zero_();
        }
    }

    /// <summary>The moments as named tensors (<c>exp_avg.NAME</c>, <c>exp_avg_sq.NAME</c>) for a checkpoint.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        foreach (var s in _slots)
        {
            yield return new("exp_avg." + s.Name, s.M);
            yield return new("exp_avg_sq." + s.Name, s.V);
        }
    }

    /// <summary>Restores the moments from a lookup (e.g. a safetensors checkpoint); every parameter must be present.</summary>
    public void LoadState(Func<string, Tensor?> lookup, long step, string source)
    {
        using var noGrad = torch.no_grad();
        foreach (var s in _slots)
        {
            foreach (var (key, dst) in new[] { ("exp_avg." + s.Name, s.M), ("exp_avg_sq." + s.Name, s.V) })
            {
                using var src = lookup(key) ?? throw new InvalidDataException($"{source}: optimizer state has no tensor '{key}'.");
                if (!src.shape.SequenceEqual(dst.shape)) throw new InvalidDataException($"{source}: tensor '{key}' has shape [{string.Join(", ", src.shape)}], expected [{string.Join(", ", dst.shape)}].");
                dst.copy_(src);
            }
        }
        Step = step;
    }

    public void Dispose()
    {
        foreach (var s in _slots) { s.M.Dispose(); s.V.Dispose(); }
    }
}
