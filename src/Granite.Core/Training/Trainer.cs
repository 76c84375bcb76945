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

    /// <summary>Keep the peak learning rate after warm-up instead of the cosine decay.</summary>
    public bool ConstantLearningRate { get; init; }

    /// <summary>
    /// Compute a batch's shared prefix without gradients (forward only): the conversations still read its state and
    /// KV cache, but no gradient flows back into the prefix positions. Cheaper when the prefix is long.
    /// </summary>
    public bool DetachPrefix { get; init; }
}

/// <summary>What one optimizer step did.</summary>
internal readonly record struct StepResult(long Step, double Loss, int SupervisedTokens, long ComputedTokens, double GradNorm, double LearningRate, TimeSpan Elapsed)
{
    /// <summary>Per example of the batch (in batch order): cross-entropy sum, supervised tokens and how many the argmax predicts.</summary>
    public IReadOnlyList<ExampleLoss> Examples { get; init; } = Array.Empty<ExampleLoss>();
}

/// <summary>One example's summed cross-entropy over its <paramref name="Count"/> supervised tokens, <paramref name="Correct"/> of which the argmax predicts.</summary>
internal readonly record struct ExampleLoss(double Sum, int Count, int Correct)
{
    /// <summary>Every supervised token is the argmax (greedy decoding would reproduce the example's outputs under teacher forcing).</summary>
    public bool Exact => Count > 0 && Correct == Count;
}

/// <summary>Mean loss per supervised token, token accuracy and the share of examples whose supervised tokens are all the argmax.</summary>
internal readonly record struct EvaluationResult(double Loss, double TokenAccuracy, double ExactShare);

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
        _schedule = new LearningRateSchedule(options.PeakLearningRate, options.WarmupSteps, options.TotalSteps, options.FinalLearningRate, options.ConstantLearningRate);
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
        var perExample = new ExampleLoss[batch.Count];
        var (loss, count, computed) = BatchLoss(Model, batch, Options.DetachPrefix, perExample);
        double value;
        using (var mean = loss / Math.Max(1, count))
        {
            mean.backward();
            value = mean.detach().to_type(ScalarType.Float64).item<double>();
        }
        double norm = Optimizer.ClipGradients(Options.ClipNorm);
        Optimizer.Update(lr);
        return new StepResult(Optimizer.Step, value, count, computed, norm, lr, sw.Elapsed) { Examples = perExample };
    }

    /// <summary>Mean supervised cross-entropy of <paramref name="examples"/> without gradients (evaluation loss).</summary>
    public static double EvaluateLoss(TrainableGranite model, IReadOnlyList<TrainingExample> examples)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (loss, count, _) = BatchLoss(model, examples);
        return loss.to_type(ScalarType.Float64).item<double>() / Math.Max(1, count);
    }

    /// <summary>Loss, token accuracy and exact-example share of <paramref name="examples"/> without gradients (teacher forcing).</summary>
    public static EvaluationResult Evaluate(TrainableGranite model, IReadOnlyList<TrainingExample> examples)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var per = new ExampleLoss[examples.Count];
        var (loss, count, _) = BatchLoss(model, examples, perExample: per);
        int n = Math.Max(1, count);
        return new EvaluationResult(loss.to_type(ScalarType.Float64).item<double>() / n, (double)per.Sum(e => e.Correct) / n,
            (double)per.Count(e => e.Exact) / Math.Max(1, per.Count(e => e.Count > 0)));
    }

    /// <summary>
    /// Sum of cross-entropy over supervised tokens (a graph when gradients are on), the number of those tokens, and the
    /// number of token positions computed. With <paramref name="detachPrefix"/> the shared prefixes run without
    /// gradients; <paramref name="perExample"/> (batch-sized, optional) receives each example's loss sum and token count.
    /// </summary>
    internal static (Tensor Loss, int Count, long Computed) BatchLoss(TrainableGranite model, IReadOnlyList<TrainingExample> batch,
        bool detachPrefix = false, ExampleLoss[]? perExample = null)
    {
        if (perExample is not null && perExample.Length != batch.Count) throw new ArgumentException("perExample must have one entry per example.", nameof(perExample));
        if (batch.Count == 0) throw new ArgumentException("Empty batch.", nameof(batch));
        Tensor? total = null;
        int count = 0;
        long computed = 0;
        var states = new List<InferenceState>();
        try
        {
            foreach (var group in Enumerable.Range(0, batch.Count).GroupBy(i => PrefixKey(batch[i])))
            {
                var first = batch[group.First()];
                int p = first.PrefixLength;
                InferenceState? prefixState = null;
                Tensor? prefixLast = null;
                if (p >= 2)
                {
                    prefixState = model.NewState();
                    states.Add(prefixState);
                    using (detachPrefix ? torch.no_grad() : null)
                        prefixLast = model.Forward(first.Ids.AsSpan(0, p), prefixState)[-1];
                    computed += p;
                }
                foreach (int exIndex in group)
                {
                    var ex = batch[exIndex];
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
                    int correct = 0;
                    if (rows.Count > 0)
                    {
                        var sel = logits.index_select(0, torch.tensor(rows.ToArray(), ScalarType.Int64));
                        var tgt = torch.tensor(targets.ToArray(), ScalarType.Int64);
                        l = F.cross_entropy(sel, tgt, reduction: nn.Reduction.Sum);
                        if (perExample is not null)
                            using (torch.no_grad()) correct += (int)sel.argmax(1).eq(tgt).sum().item<long>();
                    }
                    if (start > 0 && ex.Supervised[start])                          // first token after the prefix
                    {
                        var l0 = F.cross_entropy(prefixLast!.unsqueeze(0), torch.tensor(new long[] { ex.Ids[start] }, ScalarType.Int64), reduction: nn.Reduction.Sum);
                        l = l is null ? l0 : l + l0;
                        rows.Add(-1);
                        if (perExample is not null)
                            using (torch.no_grad()) correct += prefixLast!.argmax().item<long>() == ex.Ids[start] ? 1 : 0;
                    }
                    if (l is null) continue;
                    if (perExample is not null) perExample[exIndex] = new ExampleLoss(l.detach().to_type(ScalarType.Float64).item<double>(), rows.Count, correct);
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
