using Granite.Core.Tokenization;

namespace Granite.Extensions.AI.Chat;

/// <summary>A rendered Granite 4.0 prompt.</summary>
/// <param name="Text">The full prompt text, byte-identical to the model's own Jinja chat template.</param>
/// <param name="Segments">
/// The same text cut into pieces; concatenating <see cref="PromptSegment.Text"/> gives <paramref name="Text"/>.
/// Template pieces (<see cref="PromptSegment.IsTemplate"/> = true) may be encoded to control tokens; all other pieces
/// are untrusted content and must be encoded as plain text. Adjacent pieces never share the same flag and none is empty.
/// </param>
internal sealed record RenderedPrompt(string Text, IReadOnlyList<PromptSegment> Segments);
