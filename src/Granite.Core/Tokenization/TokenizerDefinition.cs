namespace Granite.Core.Tokenization;

/// <summary>The validated content of a <c>tokenizer.json</c> file (byte-level BPE).</summary>
internal sealed record TokenizerDefinition(
    string SourcePath,
    IReadOnlyDictionary<string, int> Vocabulary,
    IReadOnlyList<(string Left, string Right)> Merges,
    IReadOnlyList<AddedToken> AddedTokens,
    PreTokenizerPipeline PreTokenizer,
    bool IgnoreMerges);
