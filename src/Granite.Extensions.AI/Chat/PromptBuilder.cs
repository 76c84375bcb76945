using System.Text;
using Granite.Core.Tokenization;

namespace Granite.Extensions.AI.Chat;

/// <summary>Accumulates prompt text as template/untrusted segments, merging neighbours with the same flag.</summary>
internal sealed class PromptBuilder
{
    private readonly StringBuilder _text = new();
    private readonly List<PromptSegment> _segments = [];
    private readonly StringBuilder _current = new();
    private bool _currentIsTemplate;

    /// <summary>Appends text inserted by the template itself.</summary>
    public PromptBuilder Template(string text) => Append(text, isTemplate: true);

    /// <summary>Appends untrusted content (message text, tool arguments, tool results).</summary>
    public PromptBuilder Content(string text) => Append(text, isTemplate: false);

    /// <summary>Finishes the prompt.</summary>
    public RenderedPrompt Build()
    {
        Flush();
        return new RenderedPrompt(_text.ToString(), _segments.ToArray());
    }

    private PromptBuilder Append(string text, bool isTemplate)
    {
        if (text.Length == 0)
        {
            return this;
        }

        if (_current.Length > 0 && _currentIsTemplate != isTemplate)
        {
            Flush();
        }

        _currentIsTemplate = isTemplate;
        _current.Append(text);
        _text.Append(text);
        return this;
    }

    private void Flush()
    {
        if (_current.Length > 0)
        {
            _segments.Add(new PromptSegment(_current.ToString(), _currentIsTemplate));
            _current.Clear();
        }
    }
}
