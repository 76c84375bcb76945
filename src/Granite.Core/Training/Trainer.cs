using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Core.State;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Training;

/// <summary>Options of a <see cref="Trainer"/>.</summary>
internal sealed record TrainerOptions
{
    public double PeakLearningRate { get; init; } = 2e-3;
    public long WarmupSteps { get; init; } = 50;
    public long TotalSteps { get; init; } = 1000;
    public double FinalLearningRate { get; init; } = 2e-4;
    public double WeightDecay { get; init; } = 0.1;
    public double ClipNorm { get; init; } = 1.0;
}

/// <summary>What one optimizer step did.</summary>
internal readonly record struct StepResult(long Step, double Loss, int SupervisedTokens, long ComputedTokens, double GradNorm, double LearningRate, TimeSpan Elapsed);

/// <summary>
/// The training loop's step: mean cross-entropy over the supervised (assistant) tokens of a batch, one backward pass,
/// gradient clipping, AdamW with warm-up + cosine. Examples that share a prefix are run from one differentiable prefix
/// state (the prefix is computed once per batch). Every step runs in its own dispose scope.
/// </summary>
internal sealed class Trainer : IDisposable
{
    private readonly LearningRateSchedule _schedule;

    public Trainer(TrainableGranite model, TrainerOptions options)
    {
        Model = model;
        Options = options;
        Optimizer = new AdamW(model.Parameters, weightDecay: options.WeightDecay);
        _schedule = new LearningRateSchedule(options.PeakLearningRate, options.WarmupSteps, options.TotalSteps, options.FinalLearningRate);
    }

    public TrainableGranite Model { get; }
    public TrainerOptions Options { get; }
    public AdamW Optimizer { get; }

    /// <summary>Optimizer steps done so far.</summary>
    public long Step => Optimizer.Step;

    /// <summary>One optimizer step on <paramref name="batch"/>.</summary>
    public StepResult TrainStep(IReadOnlyList<TrainingExample> batch)
    {
        var sw = Stopwatch.StartNew();
        double lr = _schedule.At(Optimizer.Step);
        using var scope = torch.NewDisposeScope();
        var (loss, count, computed) = BatchLoss(Model, batch);
        double value;
        using (var mean = loss / Math.Max(1, count))
        {
            mean.backward();
            value = mean.detach().to_type(ScalarType.Float64).item<double>();
        }
        double norm = Optimizer.ClipGradients(Options.ClipNorm);
        Optimizer.Update(lr);
        return new StepResult(Optimizer.Step, value, count, computed, norm, lr, sw.Elapsed);
    }

    /// <summary>Mean supervised cross-entropy of <paramref name="examples"/> without gradients (evaluation loss).</summary>
    public static double EvaluateLoss(TrainableGranite model, IReadOnlyList<TrainingExample> examples)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (loss, count, _) = BatchLoss(model, examples);
        return loss.to_type(ScalarType.Float64).item<double>() / Math.Max(1, count);
    }

    /// <summary>
    /// Sum of cross-entropy over supervised tokens (a graph when gradients are on), the number of those tokens, and the
    /// number of token positions computed.
    /// </summary>
    internal static (Tensor Loss, int Count, long Computed) BatchLoss(TrainableGranite model, IReadOnlyList<TrainingExample> batch)
    {
        if (batch.Count == 0) throw new ArgumentException("Empty batch.", nameof(batch));
        Tensor? total = null;
        int count = 0;
        long computed = 0;
        var states = new List<InferenceState>();
        try
        {
            foreach (var group in batch.GroupBy(e => PrefixKey(e)))
            {
                var first = group.First();
                int p = first.PrefixLength;
                InferenceState? prefixState = null;
                Tensor? prefixLast = null;
                if (p >= 2)
                {
                    prefixState = model.NewState();
                    states.Add(prefixState);
                    prefixLast = model.Forward(first.Ids.AsSpan(0, p), prefixState)[-1];
                    computed += p;
                }
                foreach (var ex in group)
                {
                    ex.Validate();
                    int start = p >= 2 ? p : 0;
                    var st = prefixState?.Clone() ?? model.NewState();
                    states.Add(st);
                    var logits = model.Forward(ex.Ids.AsSpan(start), st);           // [T - start, V]
                    computed += ex.Ids.Length - start;
                    var rows = new List<long>();
                    var targets = new List<long>();
                    for (int i = Math.Max(1, start + 1); i < ex.Ids.Length; i++)
                        if (ex.Supervised[i]) { rows.Add(i - 1 - start); targets.Add(ex.Ids[i]); }
                    Tensor? l = null;
                    if (rows.Count > 0)
                    {
                        var sel = logits.index_select(0, torch.tensor(rows.ToArray(), ScalarType.Int64));
                        l = F.cross_entropy(sel, torch.tensor(targets.ToArray(), ScalarType.Int64), reduction: nn.Reduction.Sum);
                    }
                    if (start > 0 && ex.Supervised[start])                          // first token after the prefix
                    {
                        var l0 = F.cross_entropy(prefixLast!.unsqueeze(0), torch.tensor(new long[] { ex.Ids[start] }, ScalarType.Int64), reduction: nn.Reduction.Sum);
                        l = l is null ? l0 : l + l0;
                        rows.Add(-1);
                    }
                    if (l is null) continue;
                    count += rows.Count;
                    total = total is null ? l : total + l;
                }
            }
            total ??= torch.zeros(1, model.Dtype).sum();
            return (total, count, computed);
        }
        finally
        {
            // The autograd graph keeps what backward needs; the state buffers themselves can go.
            foreach (var s in states) s.Dispose();
        }
    }

    private static string PrefixKey(TrainingExample e) =>
        e.PrefixLength < 2 ? "\u0000" + RuntimeHelpers.GetHashCode(e) : string.Join(',', e.Ids.Take(e.PrefixLength));

    /// <summary>
    /// Saves a resumable checkpoint: the model folder (<c>config.json</c>, <c>model.safetensors</c>), the optimizer
    /// moments (<c>optimizer/model.safetensors</c>) and <c>trainer_state.json</c> (step plus the caller's fields).
    /// Written to a temporary folder and swapped in, so an interrupted save leaves the previous checkpoint.
    /// </summary>
    public void SaveCheckpoint(string dir, JsonObject? extra = null)
    {
        string tmp = dir.TrimEnd('/', '\\') + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Model.Save(tmp);
        Directory.CreateDirectory(Path.Combine(tmp, "optimizer"));
        using (var scope = torch.NewDisposeScope())
            SafetensorsWriter.Write(Path.Combine(tmp, "optimizer", SafetensorsCheckpoint.SingleFileName), Optimizer.StateTensors().ToList());
        var state = extra?.DeepClone().AsObject() ?? new JsonObject();
        state["step"] = Optimizer.Step;
        File.WriteAllText(Path.Combine(tmp, "trainer_state.json"), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        string old = dir.TrimEnd('/', '\\') + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, true);
        if (Directory.Exists(dir)) Directory.Move(dir, old);
        Directory.Move(tmp, dir);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    /// <summary>Reads <c>trainer_state.json</c> of a checkpoint folder.</summary>
    public static JsonObject ReadState(string dir)
    {
        string path = Path.Combine(dir, "trainer_state.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"Not a training checkpoint: {path} is missing.", path);
        return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object.");
    }

    /// <summary>Restores the optimizer moments and step from a checkpoint written by <see cref="SaveCheckpoint"/>.</summary>
    public void LoadOptimizer(string dir)
    {
        var state = ReadState(dir);
        long step = state["step"]?.GetValue<long>() ?? throw new InvalidDataException($"{dir}/trainer_state.json: field 'step' is missing.");
        using var ckpt = SafetensorsCheckpoint.Open(Path.Combine(dir, "optimizer"));
        Optimizer.LoadState(name => ckpt.Contains(name) ? ckpt.GetTensor(name) : null, step, Path.Combine(dir, "optimizer"));
    }

    public void Dispose() => Optimizer.Dispose();
}
