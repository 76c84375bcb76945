using Granite.Extensions.AI;

namespace Granite.TestHelpers;

/// <summary>Records every prompt a <see cref="GraniteChatClient"/> renders (through its internal diagnostics hook).</summary>
public sealed class PromptCapture : IDisposable
{
    private readonly GraniteChatClient _client;
    private readonly List<string> _prompts = new();
    private readonly List<IReadOnlyList<int>> _forced = new();
    private readonly List<IReadOnlyList<int>> _tokens = new();

    public PromptCapture(GraniteChatClient client)
    {
        _client = client;
        _client.PromptRendered += OnPrompt;
    }

    public IReadOnlyList<string> Prompts { get { lock (_prompts) return _prompts.ToArray(); } }

    public IReadOnlyList<IReadOnlyList<int>> ForcedTokens { get { lock (_prompts) return _forced.ToArray(); } }

    public IReadOnlyList<IReadOnlyList<int>> PromptTokens { get { lock (_prompts) return _tokens.ToArray(); } }

    private void OnPrompt(GraniteChatClient.PreparedRequest p)
    {
        lock (_prompts)
        {
            _prompts.Add(p.Prompt.Text);
            _forced.Add(p.Request.ForcedOutputTokens ?? Array.Empty<int>());
            _tokens.Add(p.Request.PromptTokens);
        }
    }

    public void Dispose() => _client.PromptRendered -= OnPrompt;
}
