using Granite.Core.Generation;
using Granite.Core.Tokenization;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Granite.Extensions.AI;

public sealed partial class GraniteChatClient
{
    /// <summary>
    /// Token length of the rendered system turn (system text, tools and documents blocks, through its
    /// <c>&lt;|end_of_text|&gt;\n</c>), when it is a strict prefix of <paramref name="ids"/>: the engine stores a shared
    /// snapshot there so new conversations with the same system prompt and tools process it only once.
    /// </summary>
    internal static IReadOnlyList<int>? SystemTurnSnapshot(RenderedPrompt prompt, GraniteTokenizer tokenizer, IReadOnlyList<int> ids)
    {
        const string end = GraniteChatTemplate.EndOfText + "\n";
        var head = new List<PromptSegment>();
        foreach (var s in prompt.Segments)
        {
            int at = s.IsTemplate ? s.Text.IndexOf(end, StringComparison.Ordinal) : -1;
            if (at < 0)
            {
                head.Add(s);
                continue;
            }
            head.Add(new PromptSegment(s.Text[..(at + end.Length)], true));
            var systemIds = tokenizer.Encode(head);
            if (systemIds.Count == 0 || systemIds.Count >= ids.Count) return null;
            for (int i = 0; i < systemIds.Count; i++) if (systemIds[i] != ids[i]) return null;
            return new[] { systemIds.Count };
        }
        return null;
    }

    /// <summary>
    /// After a turn: the next prompt re-renders this assistant turn from the parsed message (text, tool calls, then
    /// <c>&lt;|end_of_text|&gt;\n</c>). When those tokens are not an extension of the generated ids (e.g. the model wrote
    /// tool-call JSON with other spacing, or a stop sequence cut the text), the after-generation snapshot can never be a
    /// prefix of the next prompt. This detects it and, when <see cref="GraniteChatClientOptions.RepairSessionSnapshots"/>,
    /// queues a prefill of the re-rendered history (resuming from the prompt snapshot) so the next turn still resumes
    /// from the whole history. The queue is FIFO, so the next turn of this conversation runs after the repair.
    /// </summary>
    private void CheckSessionAfterTurn(IEnumerable<ChatMessage> historyWithAssistant, ChatOptions? options, GenerationRequest request, GenerationUsage? usage, string conversationId)
    {
        if (usage is null || !request.UseSessionCache || _engine.Options.SessionCacheBytes <= 0) return;
        IReadOnlyList<int> next;
        try
        {
            // Prepare renders with the generation prompt; strip that tail (special tokens bound it, so it tokenizes alone).
            next = Prepare(historyWithAssistant, options).Request.PromptTokens;
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException)
        {
            return;
        }
        var tail = _engine.Tokenizer.Encode(new[] { new PromptSegment(GraniteChatTemplate.StartOfRole + "assistant" + GraniteChatTemplate.EndOfRole, true) });
        if (next.Count <= tail.Count) return;
        var rendered = next.Take(next.Count - tail.Count).ToArray();
        int afterGeneration = usage.InputTokens + usage.OutputTokens;
        int covered = _engine.GetCachedPrefixLength(rendered);
        if (covered >= afterGeneration) return;
        _logger.LogDebug("Conversation {Id}: the re-rendered assistant turn differs from the generated tokens ({Rendered} re-rendered tokens, {Generated} generated; stored prefix {Covered})",
            conversationId, rendered.Length - usage.InputTokens, usage.OutputTokens, covered);
        if (!_options.RepairSessionSnapshots) return;
        try
        {
            // Not awaited: the engine's lifetime cancels it (between layers) and its Dispose waits for it, so no native
            // work outlives the engine.
            _ = _engine.PrefillAsync(rendered, conversationId).ContinueWith(
                t =>
                {
                    if (t.Exception?.GetBaseException() is not ObjectDisposedException)
                        _logger.LogWarning(t.Exception, "Could not store the re-rendered session snapshot of conversation {Id}", conversationId);
                },
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
