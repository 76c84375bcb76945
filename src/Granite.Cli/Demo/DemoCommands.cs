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
    public double LearningRate { get; init; } = 2.5e-3;
    public int WarmupSteps { get; init; } = 100;
    public int CheckpointEvery { get; init; } = 50;
    public int EvalCount { get; init; } = 50;
    public int Threads { get; init; } = 1;

    /// <summary>The fields that must match to resume a checkpoint.</summary>
    public JsonObject Identity() => new()
    {
        ["seed"] = Seed, ["steps"] = Steps, ["batch"] = Batch, ["merges"] = Merges, ["tokenizer_conversations"] = TokenizerConversations,
        ["hidden"] = Hidden, ["layers"] = Layers, ["learning_rate"] = LearningRate, ["warmup_steps"] = WarmupSteps,
    };
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
        var lr = CliOptions.Number("--lr", "X", "peak learning rate", d.LearningRate);
        var warmup = CliOptions.Int("--warmup", "N", "learning-rate warm-up steps", d.WarmupSteps, min: 0);
        var checkpointEvery = CliOptions.Int("--checkpoint-every", "N", "steps between checkpoints", d.CheckpointEvery, min: 1);
        var eval = CliOptions.Int("--eval", "N", "held-out conversations evaluated at the end", d.EvalCount, min: 0);
        var threads = CliOptions.Int("--threads", "N", "LibTorch threads", d.Threads, min: 1);
        var json = CliOptions.Flag("--json", "print the result as one JSON object (progress goes to stderr)");
        var command = new Command("train-demo", "train the demo tool-calling model (resumes from DIR/checkpoint); writes a Hugging Face folder to DIR")
        {
            outDir, seed, minutes, json, steps, batch, merges, tokenizerConversations, hidden, layers, lr, warmup, checkpointEvery, eval, threads,
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
            LearningRate = r.GetValue(lr) ?? d.LearningRate,
            WarmupSteps = r.GetValue(warmup),
            CheckpointEvery = r.GetValue(checkpointEvery),
            EvalCount = r.GetValue(eval),
            Threads = r.GetValue(threads),
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
            // Tokenizer: BPE over the plain text of training conversations (system block once).
            log.WriteLine($"tokenizer: training {s.Merges} merges on {s.TokenizerConversations} conversations");
            var texts = new List<string>();
            for (int i = 0; i < s.TokenizerConversations; i++)
            {
                var conv = corpus.Generate(s.Seed, DemoSplit.Train, -1 - i);
                var prompt = GraniteChatTemplate.Render(conv.Messages(), i == 0 ? tools.Declarations : null, addGenerationPrompt: false);
                texts.AddRange(DemoData.TextPieces(prompt, added));
            }
            DemoData.WriteTokenizer(s.OutDir, texts, s.Merges);
        }
        var tokenizer = GraniteTokenizer.FromDirectory(s.OutDir);
        var config = DemoData.ModelConfig(tokenizer, s.Hidden, s.Layers);
        using var model = resume ? TrainableGranite.Load(ckptDir) : TrainableGranite.Create(config, s.Seed);
        using var trainer = new Trainer(model, new TrainerOptions
        {
            PeakLearningRate = s.LearningRate, WarmupSteps = s.WarmupSteps, TotalSteps = s.Steps, FinalLearningRate = s.LearningRate / 10, WeightDecay = 0.1, ClipNorm = 1.0,
        });
        if (resume) trainer.LoadOptimizer(ckptDir);
        log.WriteLine($"model: {model.ParameterCount:N0} parameters, layers {s.Layers}, hidden {s.Hidden}, vocab {config.VocabSize}; " +
                      (resume ? $"resumed at step {trainer.Step}" : "new") + $"; {s.Steps} steps of {s.Batch} conversations, budget {s.Minutes} min");

        TrainingExample Example(DemoConversation c) =>
            DemoData.ToExample(tokenizer, GraniteChatTemplate.Render(c.Messages(), tools.Declarations, addGenerationPrompt: false));
        var heldOut = Enumerable.Range(0, 16).Select(i => Example(corpus.Generate(s.Seed + 7919, i % 2 == 0 ? DemoSplit.SeenTemplateUnseenValue : DemoSplit.UnseenTemplate, 1000 + i))).ToList();
        log.WriteLine($"prompt: shared system block {heldOut[0].PrefixLength} tokens; a conversation adds ~{heldOut.Average(e => e.Ids.Length - e.PrefixLength):F0}");

        double lastLoss = double.NaN, heldLoss = double.NaN;
        long tokens = 0, effective = 0;
        var trainTime = TimeSpan.Zero;
        var budget = TimeSpan.FromMinutes(s.Minutes);
        var window = new List<double>();
        long startStep = trainer.Step;
        while (trainer.Step < s.Steps && wall.Elapsed < budget)
        {
            ct.ThrowIfCancellationRequested();
            long step = trainer.Step;
            var batch = Enumerable.Range(0, s.Batch).Select(k => Example(corpus.Generate(s.Seed, DemoSplit.Train, step * s.Batch + k))).ToList();
            var r = trainer.TrainStep(batch);
            lastLoss = r.Loss;
            window.Add(r.Loss);
            tokens += r.ComputedTokens;
            effective += batch.Sum(e => (long)e.Ids.Length);
            trainTime += r.Elapsed;
            if (r.Step % 10 == 0 || r.Step == s.Steps)
            {
                double tps = tokens / trainTime.TotalSeconds;
                var eta = TimeSpan.FromSeconds((s.Steps - r.Step) * trainTime.TotalSeconds / Math.Max(1, r.Step - startStep));
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {r.Step}/{s.Steps}  loss {window.Average():F3}  lr {r.LearningRate:E2}  |g| {r.GradNorm:F2}  {tps:F0} tok/s ({effective / trainTime.TotalSeconds:F0} counting the shared prompt)  ETA {eta:hh\\:mm\\:ss}"));
                window.Clear();
            }
            if (r.Step % s.CheckpointEvery == 0 || r.Step == s.Steps)
            {
                heldLoss = Trainer.EvaluateLoss(model, heldOut);
                trainer.SaveCheckpoint(ckptDir, s.Identity());
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"checkpoint: step {r.Step}, held-out loss {heldLoss:F3} → {ckptDir}"));
            }
        }
        if (trainer.Step % s.CheckpointEvery != 0) trainer.SaveCheckpoint(ckptDir, s.Identity());
        if (double.IsNaN(heldLoss)) heldLoss = Trainer.EvaluateLoss(model, heldOut);

        // The standard Hugging Face folder next to the checkpoint: config, generation config, weights, tokenizer files.
        model.Save(s.OutDir);
        File.WriteAllText(Path.Combine(s.OutDir, "generation_config.json"),
            new JsonObject { ["bos_token_id"] = tokenizer.EosTokenId, ["eos_token_id"] = tokenizer.EosTokenId, ["pad_token_id"] = tokenizer.PadTokenId }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
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
