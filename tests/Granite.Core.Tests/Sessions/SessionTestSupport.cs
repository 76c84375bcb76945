using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using TorchSharp;

namespace Granite.Core.Tests.Sessions;

/// <summary>Engines on the tiny hybrid-MoE fixture (float32 compute) and Granite-formatted token prompts for session tests.</summary>
internal static class SessionTestSupport
{
    public static string ModelDir => Fixtures.Dir(Fixtures.TinyHMoe);

    public const string SystemTurn =
        "<|start_of_role|>system<|end_of_role|>You are a helpful assistant with access to the following tools. You may call one or more tools to assist with the user query.\n\n" +
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}" +
        "\n</tools>\n\nFor each tool call, return a json object with function name and arguments within <tool_call></tool_call> XML tags.<|end_of_text|>\n";

    public const string ToolCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    public static string User(string text) => "<|start_of_role|>user<|end_of_role|>" + text + "<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>";

    public static string ToolResult(string json) => "\n<|start_of_role|>user<|end_of_role|>\n<tool_response>\n" + json + "\n</tool_response><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>";

    public static string NextUser(string text) => "\n" + User(text);

    public static GraniteEngine Load(long budget = 64L << 20, SessionStoreOptions? store = null, System.Diagnostics.Metrics.IMeterFactory? meterFactory = null)
    {
        GraniteRuntime.EnsureLoaded();
        return GraniteEngine.Load(ModelDir, new GraniteEngineOptions
        {
            Model = new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32 },
            SessionCacheBytes = budget,
            SessionStore = store ?? new SessionStoreOptions(),
            MeterFactory = meterFactory,
        });
    }

    public static int[] Encode(this GraniteEngine engine, string templateText) =>
        engine.Tokenizer.Encode(new[] { new PromptSegment(templateText, true) }).ToArray();

    public sealed record Turn(int[] Prompt, int[] Output, GenerationUsage Usage, GenerationFinishReason Finish)
    {
        /// <summary>Prompt + output, plus the end-of-text token the template appends when generation did not stop on it.</summary>
        public int[] History(int eos) => Output.Length > 0 && Output[^1] == eos ? Prompt.Concat(Output).ToArray() : Prompt.Concat(Output).Append(eos).ToArray();
    }

    public static async Task<Turn> GenerateAsync(this GraniteEngine engine, int[] prompt, int maxNew = 6, bool reuse = true, string? key = null,
        IReadOnlyList<int>? snapshotAt = null, IReadOnlyList<int>? forced = null, CancellationToken ct = default)
    {
        var request = new GenerationRequest
        {
            PromptTokens = prompt,
            Sampling = new SamplingOptions { MaxNewTokens = maxNew },
            UseSessionCache = reuse,
            SessionKey = key,
            SnapshotAt = snapshotAt,
            ForcedOutputTokens = forced,
        };
        var output = new List<int>();
        GenerationUsage? usage = null;
        GenerationFinishReason? finish = null;
        await foreach (var u in engine.GenerateAsync(request, ct))
        {
            if (u.TokenId is { } id) output.Add(id);
            if (u.FinishReason is { } f) { usage = u.Usage; finish = f; }
        }
        return new Turn(prompt, output.ToArray(), usage!, finish!.Value);
    }

    /// <summary>Greedy decoding on the inference thread, recording the float32 logits of every step: either from a fresh
    /// state (full prefill of <paramref name="prompt"/>) or resumed from the engine's session store (prefill of the rest).</summary>
    public static Task<(float[][] Logits, int Cached)> StepLogitsAsync(this GraniteEngine engine, int[] prompt, int steps, bool resume) =>
        engine.RunOnInferenceThreadAsync(() =>
        {
            var (state, cached) = resume ? engine.Sessions.Resume(engine.Model, prompt) : (engine.Model.CreateState(), 0);
            using (state)
            {
                var rows = new List<float[]>();
                int[] feed = prompt.Skip(state.Length).ToArray();
                for (int s = 0; s <= steps; s++)
                {
                    using var scope = torch.NewDisposeScope();
                    var logits = engine.Model.Forward(feed, state);
                    var row = logits.data<float>().ToArray();
                    rows.Add(row);
                    int next = Array.IndexOf(row, row.Max());
                    feed = new[] { next };
                }
                return (rows.ToArray(), cached);
            }
        });

    public static double MaxAbsDiff(float[][] a, float[][] b)
    {
        a.Length.Should().Be(b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            a[i].Length.Should().Be(b[i].Length);
            for (int j = 0; j < a[i].Length; j++) max = Math.Max(max, Math.Abs(a[i][j] - b[i][j]));
        }
        return max;
    }

    public static int[] Argmaxes(float[][] rows) => rows.Select(r => Array.IndexOf(r, r.Max())).ToArray();
}
