using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Core.Tokenization;
using Granite.Core.Training;
using Granite.Extensions.AI.Chat;
using TorchSharp;

namespace Granite.Cli.Demo;

/// <summary>Settings of one <c>granite train-demo</c> run (all but the wall-clock budget decide the weights).</summary>
internal sealed record DemoTrainSettings
{
    public required string OutDir { get; init; }
    public long Seed { get; init; } = 1;
    public double Minutes { get; init; } = 110;
    public int Steps { get; init; } = 4000;
    public int Batch { get; init; } = 8;
    public int Merges { get; init; } = 2000;
    public int TokenizerConversations { get; init; } = 3000;
    public int Hidden { get; init; } = 128;
    public string Layers { get; init; } = "mmamma";

    /// <summary>Attention heads per attention layer (0: one per 32 hidden units).</summary>
    public int Heads { get; init; }
    public double LearningRate { get; init; } = 2.5e-3;
    public int WarmupSteps { get; init; } = 100;
    public int CheckpointEvery { get; init; } = 50;
    public int EvalCount { get; init; } = 50;
    public int Threads { get; init; } = 1;

    /// <summary><c>constant</c> (the peak after warm-up) or <c>cosine</c> (decay to a tenth of the peak at <see cref="Steps"/>).</summary>
    public string Schedule { get; init; } = "constant";

    /// <summary>First steps that train on copy-curriculum conversations only (short, no tool block).</summary>
    public int CopyWarmup { get; init; } = 300;

    /// <summary>Copy conversations per warm-up step.</summary>
    public int CopyBatch { get; init; } = 16;

    /// <summary>Copy conversations added to every main step after the warm-up.</summary>
    public int CopyMix { get; init; } = 4;

    /// <summary>Whether the shared system block runs without gradients (<c>detached</c>) or is trained through (<c>trained</c>).</summary>
    public string Prefix { get; init; } = "detached";

    /// <summary>Version of the corpus generator (2: fresh random numbers of random lengths, the copy curriculum).</summary>
    public const int CorpusVersion = 2;

    /// <summary>
    /// The fields that must match to resume a checkpoint. With the constant schedule the weights after step N do not
    /// depend on the total step count, so <c>steps</c> may grow between sessions.
    /// </summary>
    public JsonObject Identity()
    {
        var o = new JsonObject
        {
            ["seed"] = Seed, ["batch"] = Batch, ["merges"] = Merges, ["tokenizer_conversations"] = TokenizerConversations,
            ["hidden"] = Hidden, ["layers"] = Layers, ["heads"] = Heads, ["learning_rate"] = LearningRate, ["warmup_steps"] = WarmupSteps,
            ["schedule"] = Schedule, ["copy_warmup"] = CopyWarmup, ["copy_batch"] = CopyBatch, ["copy_mix"] = CopyMix, ["prefix"] = Prefix,
            ["corpus"] = CorpusVersion,
        };
        if (Schedule != "constant") o["steps"] = Steps;
        return o;
    }
}

/// <summary>What a train-demo run did.</summary>
internal sealed record DemoTrainResult(long Step, long TotalSteps, bool Finished, double LastLoss, double HeldOutLoss, double TokensPerSecond, double EffectiveTokensPerSecond, long Parameters, DemoEvalReport? Evaluation);

/// <summary>
/// <c>granite train-demo</c>: corpus → tokenizer → Granite 4.0-H model trained with the project's own modules →
/// standard Hugging Face folder, resumable from <c>DIR/checkpoint</c>; <c>granite eval-demo</c>: held-out accuracy.
/// </summary>
internal static class DemoCommands
{
    /// <summary><c>granite train-demo</c>: options, defaults and checks; the run itself is <see cref="TrainAsync(DemoTrainSettings, TextWriter, CancellationToken)"/>.</summary>
    public static Command TrainCommand()
    {
        var d = new DemoTrainSettings { OutDir = "" };
        var outDir = CliOptions.Text("--out", "DIR", "output folder: the Hugging Face model, and DIR/checkpoint to resume from", required: true);
        var seed = CliOptions.Int("--seed", "S", "seed of the corpus, tokenizer and weights", (int)d.Seed, min: 0);
        var minutes = CliOptions.Number("--minutes", "M", "wall-clock budget; the run stops (resumable) when it is spent", d.Minutes,
            m => m > 0 ? null : "option --minutes must be > 0");
        var steps = CliOptions.Int("--steps", "N", "optimizer steps", d.Steps, min: 1);
        var batch = CliOptions.Int("--batch", "B", "conversations per step", d.Batch, min: 1);
        var merges = CliOptions.Int("--merges", "N", "BPE merges of the trained tokenizer", d.Merges, min: 0);
        var tokenizerConversations = CliOptions.Int("--tokenizer-conversations", "N", "conversations the tokenizer is trained on", d.TokenizerConversations, min: 10);
        var hidden = CliOptions.Int("--hidden", "H", "hidden size (a multiple of 32)", d.Hidden, min: 32,
            check: h => h % 32 == 0 ? null : $"option --hidden must be a multiple of 32 (got {h})");
        var layers = CliOptions.Text("--layers", "mmamma", "layer kinds, m (Mamba) or a (attention), starting with m", d.Layers,
            l => l.Length > 0 && l[0] == 'm' && l.All(k => k is 'm' or 'a') ? null
                : $"option --layers must be a string of m (Mamba) and a (attention) that starts with m (got '{l}')");
        var heads = CliOptions.Int("--heads", "N", "attention heads per attention layer (0: hidden / 32)", d.Heads, min: 0);
        var lr = CliOptions.Number("--lr", "X", "peak learning rate", d.LearningRate);
        var warmup = CliOptions.Int("--warmup", "N", "learning-rate warm-up steps", d.WarmupSteps, min: 0);
        var checkpointEvery = CliOptions.Int("--checkpoint-every", "N", "steps between checkpoints", d.CheckpointEvery, min: 1);
        var eval = CliOptions.Int("--eval", "N", "held-out conversations evaluated at the end", d.EvalCount, min: 0);
        var threads = CliOptions.Int("--threads", "N", "LibTorch threads", d.Threads, min: 1);
        var schedule = CliOptions.Text("--schedule", "constant|cosine", "learning rate after warm-up: constant peak, or cosine decay to a tenth at --steps", d.Schedule,
            v => v is "constant" or "cosine" ? null : $"option --schedule must be constant or cosine (got '{v}')");
        var copyWarmup = CliOptions.Int("--copy-warmup", "N", "first steps on copy-curriculum conversations only (values drawn fresh, no tool block)", d.CopyWarmup, min: 0);
        var copyBatch = CliOptions.Int("--copy-batch", "N", "copy conversations per warm-up step", d.CopyBatch, min: 1);
        var copyMix = CliOptions.Int("--copy-mix", "N", "copy conversations added to every later step", d.CopyMix, min: 0);
        var prefix = CliOptions.Text("--prefix", "detached|trained", "the shared system block runs without gradients (detached) or is trained through", d.Prefix,
            v => v is "detached" or "trained" ? null : $"option --prefix must be detached or trained (got '{v}')");
        var json = CliOptions.Flag("--json", "print the result as one JSON object (progress goes to stderr)");
        var command = new Command("train-demo", "train the demo tool-calling model (resumes from DIR/checkpoint); writes a Hugging Face folder to DIR")
        {
            outDir, seed, minutes, json, steps, batch, merges, tokenizerConversations, hidden, layers, lr, warmup, checkpointEvery, eval, threads,
            schedule, copyWarmup, copyBatch, copyMix, prefix, heads,
        };
        command.SetAction((r, ct) => TrainAsync(new DemoTrainSettings
        {
            OutDir = r.GetRequiredValue(outDir),
            Seed = r.GetValue(seed),
            Minutes = r.GetValue(minutes) ?? d.Minutes,
            Steps = r.GetValue(steps),
            Batch = r.GetValue(batch),
            Merges = r.GetValue(merges),
            TokenizerConversations = r.GetValue(tokenizerConversations),
            Hidden = r.GetValue(hidden),
            Layers = r.GetValue(layers) ?? d.Layers,
            Heads = r.GetValue(heads),
            LearningRate = r.GetValue(lr) ?? d.LearningRate,
            WarmupSteps = r.GetValue(warmup),
            CheckpointEvery = r.GetValue(checkpointEvery),
            EvalCount = r.GetValue(eval),
            Threads = r.GetValue(threads),
            Schedule = r.GetValue(schedule) ?? d.Schedule,
            CopyWarmup = r.GetValue(copyWarmup),
            CopyBatch = r.GetValue(copyBatch),
            CopyMix = r.GetValue(copyMix),
            Prefix = r.GetValue(prefix) ?? d.Prefix,
        }, r.GetValue(json), r.InvocationConfiguration.Output, r.InvocationConfiguration.Error, ct));
        return command;
    }

    private static async Task<int> TrainAsync(DemoTrainSettings s, bool json, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var log = json ? stderr : stdout;
        var result = await TrainAsync(s, log, ct);
        if (json)
        {
            var o = new Dictionary<string, object?>
            {
                ["out"] = s.OutDir, ["step"] = result.Step, ["total_steps"] = result.TotalSteps, ["finished"] = result.Finished,
                ["loss"] = Math.Round(result.LastLoss, 4), ["held_out_loss"] = Math.Round(result.HeldOutLoss, 4),
                ["tokens_per_second"] = Math.Round(result.TokensPerSecond, 1), ["effective_tokens_per_second"] = Math.Round(result.EffectiveTokensPerSecond, 1),
                ["parameters"] = result.Parameters, ["evaluation"] = result.Evaluation?.ToJson(),
            };
            stdout.WriteLine(JsonSerializer.Serialize(o, GraniteCli.Json));
        }
        return 0;
    }

    /// <summary><c>granite eval-demo</c>: held-out tool-calling accuracy through <c>GraniteChatClient</c>.</summary>
    public static Command EvalCommand()
    {
        var model = CliOptions.Model();
        var seed = CliOptions.Int("--seed", "S", "seed of the held-out conversations (the training seed)", 1, min: 0);
        var count = CliOptions.Int("--count", "N", "conversations per template set", 50, min: 1);
        var json = CliOptions.Flag("--json", "print the report as one JSON object");
        var command = new Command("eval-demo", "held-out tool-calling accuracy of a demo model through GraniteChatClient") { model, seed, count, json };
        command.SetAction((r, ct) => EvalAsync(GraniteCli.ModelDir(r.GetRequiredValue(model)), r.GetValue(seed), r.GetValue(count), r.GetValue(json),
            r.InvocationConfiguration.Output, r.InvocationConfiguration.Error, ct));
        return command;
    }

    private static async Task<int> EvalAsync(string dir, long seed, int count, bool json, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var report = await DemoEvaluation.RunAsync(dir, seed, count, json ? null : stderr, ct);
        if (json) stdout.WriteLine(JsonSerializer.Serialize(report.ToJson(), GraniteCli.Json));
        else
        {
            report.Print(stdout);
            foreach (var line in report.Samples) stdout.WriteLine("  " + line);
        }
        return 0;
    }

    internal static async Task<DemoTrainResult> TrainAsync(DemoTrainSettings s, TextWriter log, CancellationToken ct)
    {
        var wall = Stopwatch.StartNew();
        if (s.Heads > 0 && s.Hidden % s.Heads != 0) throw new CliUsageException($"option --heads must divide --hidden {s.Hidden} (got {s.Heads})");
        torch.set_num_threads(s.Threads);
        torch.manual_seed(s.Seed);
        Directory.CreateDirectory(s.OutDir);
        string ckptDir = Path.Combine(s.OutDir, "checkpoint");
        using var tools = DemoTools.Create(s.Seed);
        var corpus = new DemoCorpus(tools);
        var added = DemoData.GraniteAddedTokens().Select(t => t["content"]!.GetValue<string>()).ToArray();

        bool resume = Directory.Exists(ckptDir);
        if (resume)
        {
            var state = Trainer.ReadState(ckptDir);
            var identity = s.Identity();
            foreach (var (k, v) in identity)
                if (state[k]?.ToJsonString() != v?.ToJsonString())
                    throw new CliUsageException($"{ckptDir}/trainer_state.json has {k} = {state[k]?.ToJsonString() ?? "(missing)"}, this run asks for {v?.ToJsonString()}; use another --out or the same options");
        }
        else
        {
            // Tokenizer: BPE over the plain text of training conversations (system block once) and copy conversations.
            log.WriteLine($"tokenizer: training {s.Merges} merges on {s.TokenizerConversations} conversations");
            var texts = new List<string>();
            for (int i = 0; i < s.TokenizerConversations; i++)
            {
                var conv = corpus.Generate(s.Seed, DemoSplit.Train, -1 - i);
                var prompt = GraniteChatTemplate.Render(conv.Messages(), i == 0 ? tools.Declarations : null, addGenerationPrompt: false);
                texts.AddRange(DemoData.TextPieces(prompt, added));
            }
            for (int i = 0; i < s.TokenizerConversations / 5; i++)                    // the copy curriculum's random names and numbers
                texts.AddRange(DemoData.TextPieces(GraniteChatTemplate.Render(corpus.CopyConversation(s.Seed, -1, i).Messages(), null, addGenerationPrompt: false), added));
            DemoData.WriteTokenizer(s.OutDir, texts, s.Merges);
        }
        var tokenizer = GraniteTokenizer.FromDirectory(s.OutDir);
        var config = DemoData.ModelConfig(tokenizer, s.Hidden, s.Layers, s.Heads);
        using var model = resume ? TrainableGranite.Load(ckptDir) : TrainableGranite.Create(config, s.Seed);
        using var trainer = new Trainer(model, new TrainerOptions
        {
            PeakLearningRate = s.LearningRate, WarmupSteps = s.WarmupSteps, TotalSteps = s.Steps, FinalLearningRate = s.LearningRate / 10, WeightDecay = 0.1, ClipNorm = 1.0,
            ConstantLearningRate = s.Schedule == "constant", DetachPrefix = s.Prefix == "detached",
        });
        if (resume) trainer.LoadOptimizer(ckptDir);
        log.WriteLine($"model: {model.ParameterCount:N0} parameters, layers {s.Layers}, hidden {s.Hidden}, vocab {config.VocabSize}; " +
                      (resume ? $"resumed at step {trainer.Step}" : "new") + $"; {s.Steps} steps of {s.Batch} conversations (+{s.CopyMix} copy), " +
                      $"{s.Schedule} learning rate {s.LearningRate}, copy warm-up {s.CopyWarmup} steps of {s.CopyBatch}, prefix {s.Prefix}, budget {s.Minutes} min");

        TrainingExample Example(DemoConversation c) =>
            DemoData.ToExample(tokenizer, GraniteChatTemplate.Render(c.Messages(), tools.Declarations, addGenerationPrompt: false));
        TrainingExample CopyExample(DemoConversation c) =>
            DemoData.ToExample(tokenizer, GraniteChatTemplate.Render(c.Messages(), null, addGenerationPrompt: false));
        var copyHeld = Enumerable.Range(0, 32).Select(i => CopyExample(corpus.CopyConversation(s.Seed, 99, i))).ToList();
        var heldOut = Enumerable.Range(0, 32).Select(i => Example(corpus.Generate(s.Seed + 7919, i % 2 == 0 ? DemoSplit.SeenTemplateUnseenValue : DemoSplit.UnseenTemplate, 1000 + i))).ToList();
        log.WriteLine($"prompt: shared system block {heldOut[0].PrefixLength} tokens; a conversation adds ~{heldOut.Average(e => e.Ids.Length - e.PrefixLength):F0}");

        double lastLoss = double.NaN, heldLoss = double.NaN;
        long tokens = 0, effective = 0;
        var trainTime = TimeSpan.Zero;
        var budget = TimeSpan.FromMinutes(s.Minutes);
        double mainSum = 0, copySum = 0;
        long mainCount = 0, copyCount = 0;
        long startStep = trainer.Step;
        void WriteFolder()
        {
            // The standard Hugging Face folder next to the checkpoint: config, generation config, weights, tokenizer files.
            model.Save(s.OutDir);
            File.WriteAllText(Path.Combine(s.OutDir, "generation_config.json"),
                new JsonObject { ["bos_token_id"] = tokenizer.EosTokenId, ["eos_token_id"] = tokenizer.EosTokenId, ["pad_token_id"] = tokenizer.PadTokenId }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        while (trainer.Step < s.Steps && wall.Elapsed < budget)
        {
            ct.ThrowIfCancellationRequested();
            long step = trainer.Step;
            var batch = new List<TrainingExample>();
            int main = 0;
            if (step < s.CopyWarmup)
                for (int k = 0; k < s.CopyBatch; k++) batch.Add(CopyExample(corpus.CopyConversation(s.Seed, 0, step * s.CopyBatch + k)));
            else
            {
                for (int k = 0; k < s.Batch; k++) batch.Add(Example(corpus.Generate(s.Seed, DemoSplit.Train, step * s.Batch + k)));
                main = batch.Count;
                for (int k = 0; k < s.CopyMix; k++) batch.Add(CopyExample(corpus.CopyConversation(s.Seed, 1, step * s.CopyMix + k)));
            }
            var r = trainer.TrainStep(batch);
            lastLoss = r.Loss;
            for (int i = 0; i < r.Examples.Count; i++)
            {
                if (i < main) { mainSum += r.Examples[i].Sum; mainCount += r.Examples[i].Count; }
                else { copySum += r.Examples[i].Sum; copyCount += r.Examples[i].Count; }
            }
            tokens += r.ComputedTokens;
            effective += batch.Sum(e => (long)e.Ids.Length);
            trainTime += r.Elapsed;
            if (r.Step % 10 == 0 || r.Step == s.Steps)
            {
                double tps = tokens / trainTime.TotalSeconds;
                var eta = TimeSpan.FromSeconds((s.Steps - r.Step) * trainTime.TotalSeconds / Math.Max(1, r.Step - startStep));
                string Mean(double sum, long n) => n == 0 ? "-" : (sum / n).ToString("F3", CultureInfo.InvariantCulture);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {r.Step}/{s.Steps}  loss {Mean(mainSum, mainCount)}  copy loss {Mean(copySum, copyCount)}  lr {r.LearningRate:E2}  |g| {r.GradNorm:F2}  {tps:F0} tok/s ({effective / trainTime.TotalSeconds:F0} counting the shared prompt)  {r.Elapsed.TotalSeconds:F1} s/step  ETA {eta:hh\\:mm\\:ss}"));
                mainSum = copySum = 0;
                mainCount = copyCount = 0;
            }
            if (r.Step % s.CheckpointEvery == 0 || r.Step == s.Steps)
            {
                var held = Trainer.Evaluate(model, heldOut);
                var copy = Trainer.Evaluate(model, copyHeld);
                heldLoss = held.Loss;
                trainer.SaveCheckpoint(ckptDir, s.Identity());
                WriteFolder();
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"checkpoint: step {r.Step}, held-out loss {held.Loss:F3} (token accuracy {100 * held.TokenAccuracy:F1} %, conversations all right {100 * held.ExactShare:F0} %), " +
                    $"fresh copy loss {copy.Loss:F3} ({100 * copy.TokenAccuracy:F1} %, {100 * copy.ExactShare:F0} %) → {ckptDir}"));
            }
        }
        if (trainer.Step % s.CheckpointEvery != 0) trainer.SaveCheckpoint(ckptDir, s.Identity());
        if (double.IsNaN(heldLoss)) heldLoss = Trainer.EvaluateLoss(model, heldOut);
        WriteFolder();
        bool finished = trainer.Step >= s.Steps;
        log.WriteLine(finished
            ? $"trained {trainer.Step} steps; model written to {s.OutDir}"
            : $"stopped at step {trainer.Step}/{s.Steps} (budget {s.Minutes} min); run the same command again to resume from {ckptDir}. Current weights written to {s.OutDir}");
        DemoEvalReport? report = null;
        if (s.EvalCount > 0)
        {
            report = await DemoEvaluation.RunAsync(s.OutDir, s.Seed, s.EvalCount, log, ct);
            report.Print(log);
        }
        double secs = Math.Max(1e-9, trainTime.TotalSeconds);
        return new DemoTrainResult(trainer.Step, s.Steps, finished, lastLoss, heldLoss, tokens / secs, effective / secs, model.ParameterCount, report);
    }
}
