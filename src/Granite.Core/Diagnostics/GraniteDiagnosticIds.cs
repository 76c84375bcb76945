namespace Granite.Core.Diagnostics;

/// <summary>Diagnostic ids of the public API marked <see cref="System.Diagnostics.CodeAnalysis.ExperimentalAttribute"/>
/// (listed with their meaning in docs/api-surface.md).</summary>
internal static class GraniteDiagnosticIds
{
    /// <summary>Engine-level constrained decoding (<c>Granite.Core.Constraints</c> and
    /// <c>GenerationRequest.Constraint</c>): supported, but its shape may still change between minor versions.</summary>
    public const string ExperimentalConstraints = "GRANITE0001";

    /// <summary>Where each diagnostic id is explained; <c>{0}</c> is the id.</summary>
    public const string UrlFormat = "https://github.com/granite-semantickernel/Granite.SemanticKernel/blob/main/docs/api-surface.md#{0}";
}
