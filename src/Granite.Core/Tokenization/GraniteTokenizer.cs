using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Granite.Core.Tokenization;

/// <summary>
/// The Granite byte-level BPE tokenizer, loaded from a Hugging Face <c>tokenizer.json</c> and producing the same ids as
/// Hugging Face for trusted text. Untrusted text (<see cref="Encode(string, bool)"/> with
/// <c>allowSpecialTokens: false</c>, or non-template <see cref="PromptSegment"/>s) never produces added/control tokens.
/// Instances are immutable and thread-safe.
/// </summary>
public sealed class GraniteTokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly PreTokenizerPipeline _preTokenizer;
    private readonly AddedTokenMatcher _matcher;
    private readonly IReadOnlyDictionary<string, int> _vocab;
    private readonly Dictionary<string, int> _addedTokens;
    private readonly string?[] _idToToken;
    private readonly byte[]?[] _idToBytes;
    private readonly bool[] _isSpecial;
    private readonly bool _ignoreMerges;

    // piece → ids cache (like the Hugging Face BPE word cache); bounded, span-keyed to avoid allocations on hits
    private const int MaxCachedPieceLength = 48;
    private const int MaxCacheEntries = 50_000;
    private readonly ConcurrentDictionary<string, int[]> _pieceCache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _pieceLookup;

    private GraniteTokenizer(TokenizerDefinition definition, TokenizerSettings settings, string? settingsPath, ModelTokenIds fallbackIds, string? fallbackSource, string? vocabSource = null)
    {
        if (fallbackIds.VocabSize is int modelVocab)
        {
            // Every id the tokenizer can emit must be a row of the model's embedding.
            foreach ((string token, int id) in definition.Vocabulary)
            {
                if (id >= modelVocab)
                    throw TokenizerJsonReader.Error(definition.SourcePath, $"'model.vocab' entry '{Granite.Core.Diagnostics.ErrorText.Excerpt(token)}' has id {id}, outside the model's vocabulary (vocab_size {modelVocab} in {vocabSource})");
            }

            for (int i = 0; i < definition.AddedTokens.Count; i++)
            {
                if (definition.AddedTokens[i].Id >= modelVocab)
                    throw TokenizerJsonReader.Error(definition.SourcePath, $"'added_tokens[{i}]' '{Granite.Core.Diagnostics.ErrorText.Excerpt(definition.AddedTokens[i].Content)}' has id {definition.AddedTokens[i].Id}, outside the model's vocabulary (vocab_size {modelVocab} in {vocabSource})");
            }
        }

        _vocab = definition.Vocabulary;
        _pieceLookup = _pieceCache.GetAlternateLookup<ReadOnlySpan<char>>();
        _preTokenizer = definition.PreTokenizer;
        _ignoreMerges = definition.IgnoreMerges;
        _matcher = new AddedTokenMatcher(definition.AddedTokens);
        _addedTokens = definition.AddedTokens.ToDictionary(t => t.Content, t => t.Id, StringComparer.Ordinal);

        try
        {
            _bpe = BpeTokenizer.Create(new BpeOptions(_vocab)
            {
                Merges = definition.Merges.Select(m => $"{m.Left} {m.Right}"),
                ByteLevel = true,
            });
        }
        catch (InvalidOperationException ex)
        {
            throw TokenizerJsonReader.Error(definition.SourcePath, $"rejected by the BPE builder: {ex.Message}", ex);
        }

        int size = Math.Max(_vocab.Values.Max(), definition.AddedTokens.Count == 0 ? 0 : definition.AddedTokens.Max(t => t.Id)) + 1;
        _idToToken = new string?[size];
        _idToBytes = new byte[]?[size];
        _isSpecial = new bool[size];
        foreach ((string token, int id) in _vocab)
        {
            _idToToken[id] = token;
            _idToBytes[id] = ByteLevelAlphabet.TokenToBytes(token);
        }

        foreach (AddedToken token in definition.AddedTokens)
        {
            _idToToken[token.Id] = token.Content;
            _idToBytes[token.Id] = ByteLevelAlphabet.TokenToBytes(token.Content);
            _isSpecial[token.Id] = token.Special;
        }

        VocabularySize = _vocab.Count + definition.AddedTokens.Count(t => !_vocab.ContainsKey(t.Content));
        ChatTemplate = settings.ChatTemplate;
        BosTokenId = ResolveSpecial(settings.BosToken, "bos_token", settingsPath, fallbackIds.Bos, "bos_token_id", fallbackSource);
        EosTokenId = ResolveSpecial(settings.EosToken, "eos_token", settingsPath, fallbackIds.Eos, "eos_token_id", fallbackSource);
        PadTokenId = ResolveSpecial(settings.PadToken, "pad_token", settingsPath, fallbackIds.Pad, "pad_token_id", fallbackSource);
    }

    /// <summary>
    /// Loads <c>tokenizer.json</c> and (if present) <c>tokenizer_config.json</c> from a model directory. Special ids
    /// missing from <c>tokenizer_config.json</c> fall back to <c>generation_config.json</c>, then <c>config.json</c>;
    /// a missing chat template falls back to <c>chat_template.jinja</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The directory has no <c>tokenizer.json</c>.</exception>
    /// <exception cref="InvalidDataException">A file is malformed; the message names the file and the problem.</exception>
    public static GraniteTokenizer FromDirectory(string modelDir)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        if (!Directory.Exists(modelDir))
        {
            throw new DirectoryNotFoundException($"Model directory '{modelDir}' does not exist.");
        }

        string configPath = Path.Combine(modelDir, "tokenizer_config.json");
        TokenizerDefinition definition = TokenizerJsonReader.Read(Path.Combine(modelDir, "tokenizer.json"));
        TokenizerSettings settings = File.Exists(configPath) ? TokenizerConfigReader.ReadTokenizerConfig(configPath) : TokenizerSettings.Empty;

        string templatePath = Path.Combine(modelDir, "chat_template.jinja");
        if (settings.ChatTemplate is null && File.Exists(templatePath))
        {
            settings = settings with { ChatTemplate = Encoding.UTF8.GetString(Granite.Core.Diagnostics.CheckedFile.ReadAllBytes(templatePath)) };
        }

        ModelTokenIds ids = default;
        string? vocabSource = null;
        var sources = new List<string>();
        foreach (string name in new[] { "generation_config.json", "config.json" })
        {
            string path = Path.Combine(modelDir, name);
            if (File.Exists(path))
            {
                ModelTokenIds found = TokenizerConfigReader.ReadModelTokenIds(path);
                ids = new ModelTokenIds(ids.Bos ?? found.Bos, ids.Eos ?? found.Eos, ids.Pad ?? found.Pad, ids.VocabSize ?? found.VocabSize);
                if (found.VocabSize is not null) vocabSource = path;
                sources.Add(path);
            }
        }

        return new GraniteTokenizer(definition, settings, File.Exists(configPath) ? configPath : null, ids,
            sources.Count == 0 ? null : string.Join(" / ", sources), vocabSource);
    }

    /// <summary>Loads a tokenizer from a <c>tokenizer.json</c> file and an optional <c>tokenizer_config.json</c>.</summary>
    /// <exception cref="FileNotFoundException">A given file does not exist.</exception>
    /// <exception cref="InvalidDataException">A file is malformed; the message names the file and the problem.</exception>
    public static GraniteTokenizer FromFiles(string tokenizerJsonPath, string? tokenizerConfigPath)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJsonPath);
        TokenizerDefinition definition = TokenizerJsonReader.Read(tokenizerJsonPath);
        TokenizerSettings settings = tokenizerConfigPath is null ? TokenizerSettings.Empty : TokenizerConfigReader.ReadTokenizerConfig(tokenizerConfigPath);
        return new GraniteTokenizer(definition, settings, tokenizerConfigPath, default, null);
    }

    /// <summary>Number of distinct tokens: base vocabulary plus added tokens (Hugging Face <c>len(tokenizer)</c>).</summary>
    public int VocabularySize { get; }

    /// <summary>End-of-sequence id (<c>eos_token</c>), or <see langword="null"/> if none is configured.</summary>
    public int? EosTokenId { get; }

    /// <summary>Beginning-of-sequence id (<c>bos_token</c>), or <see langword="null"/> if none is configured. Never added by <see cref="Encode(string, bool)"/>.</summary>
    public int? BosTokenId { get; }

    /// <summary>Padding id (<c>pad_token</c>), or <see langword="null"/> if none is configured.</summary>
    public int? PadTokenId { get; }

    /// <summary>All added tokens (special or not) by content.</summary>
    public IReadOnlyDictionary<string, int> AddedTokens => _addedTokens;

    /// <summary>The Jinja chat template from <c>tokenizer_config.json</c>, if any.</summary>
    public string? ChatTemplate { get; }

    /// <summary>
    /// Encodes text without adding BOS/EOS. With <paramref name="allowSpecialTokens"/> = <see langword="false"/> (the
    /// default, for untrusted text) strings such as <c>&lt;|end_of_text|&gt;</c> are encoded as ordinary text; with
    /// <see langword="true"/> every added token is recognised exactly like Hugging Face does.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool allowSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (allowSpecialTokens)
        {
            return Encode([new PromptSegment(text, IsTemplate: true)]);
        }

        var ids = new List<int>(text.Length / 3 + 1);
        EncodeOrdinary(text, ids);
        return ids;
    }

    /// <summary>
    /// Encodes the concatenation of <paramref name="segments"/>. Added tokens are recognised only inside template
    /// segments (and only when entirely inside one); all other text, across segment boundaries, is pre-tokenized and
    /// byte-pair encoded as one run, so benign input yields the same ids as encoding the whole string.
    /// </summary>
    public IReadOnlyList<int> Encode(IEnumerable<PromptSegment> segments)
    {
        ArgumentNullException.ThrowIfNull(segments);
        var ids = new List<int>();
        var run = new StringBuilder();
        foreach (PromptSegment segment in segments)
        {
            string text = segment.Text ?? string.Empty;
            if (!segment.IsTemplate)
            {
                run.Append(text);
                continue;
            }

            int pos = 0;
            while (_matcher.TryFindNext(text, pos, out int start, out int end, out AddedToken token))
            {
                run.Append(text, pos, start - pos);
                FlushRun(run, ids);
                ids.Add(token.Id);
                pos = end;
            }

            run.Append(text, pos, text.Length - pos);
        }

        FlushRun(run, ids);
        return ids;
    }

    /// <summary>
    /// Decodes ids to text like Hugging Face (<c>skip_special_tokens</c> drops only added tokens flagged special);
    /// invalid or truncated UTF-8 becomes U+FFFD. Ids unknown to the tokenizer (e.g. embedding padding rows) are ignored.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var buffer = new ArrayBufferWriter<byte>();
        foreach (int id in ids)
        {
            if (TokenBytes(id, skipSpecialTokens) is { } bytes)
            {
                buffer.Write(bytes);
            }
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>The id of a vocabulary or added token (exact token string, e.g. <c>"Ġthe"</c>), or <see langword="null"/>.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedTokens.TryGetValue(token, out int id) || _vocab.TryGetValue(token, out id))
        {
            return id;
        }

        return null;
    }

    /// <summary>The token string of an id (byte-level form for vocabulary tokens), or <see langword="null"/> if unknown.</summary>
    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    /// <summary>Whether <paramref name="id"/> is an added token flagged <c>special</c> (dropped by <c>skipSpecialTokens</c>).</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    /// <summary>Creates a decoder for generated ids that only ever emits complete characters.</summary>
    public StreamingDetokenizer CreateStreamingDetokenizer(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>The UTF-8 bytes of a token, or <see langword="null"/> if the id is unknown or skipped.</summary>
    internal byte[]? TokenBytes(int id, bool skipSpecialTokens)
    {
        if ((uint)id >= (uint)_idToBytes.Length || (skipSpecialTokens && _isSpecial[id]))
        {
            return null;
        }

        return _idToBytes[id];
    }

    private void FlushRun(StringBuilder run, List<int> ids)
    {
        if (run.Length > 0)
        {
            EncodeOrdinary(run.ToString(), ids);
            run.Clear();
        }
    }

    private void EncodeOrdinary(string text, List<int> ids)
    {
        text = ReplaceLoneSurrogates(text);
        var pieces = new List<TextPiece>();
        _preTokenizer.PreTokenize(text, pieces);
        foreach (TextPiece piece in pieces)
        {
            if (_ignoreMerges && _vocab.TryGetValue(ByteLevelAlphabet.Encode(piece.Span), out int whole))
            {
                ids.Add(whole);
                continue;
            }

            bool cacheable = piece.Length <= MaxCachedPieceLength;
            if (cacheable && _pieceLookup.TryGetValue(piece.Span, out int[]? cached))
            {
                ids.AddRange(cached);
                continue;
            }

            IReadOnlyList<int> pieceIds = _bpe.EncodeToIds(piece.Span, considerPreTokenization: false, considerNormalization: false);
            ids.AddRange(pieceIds);
            if (cacheable && _pieceCache.Count < MaxCacheEntries)
            {
                _pieceCache.TryAdd(piece.ToString(), pieceIds.ToArray());
            }
        }
    }

    /// <summary>Lone UTF-16 surrogates cannot be UTF-8 encoded; like <see cref="Encoding.UTF8"/> they become U+FFFD.</summary>
    private static string ReplaceLoneSurrogates(string text)
    {
        int i = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (i < 0)
        {
            return text;
        }

        char[]? copy = null;
        for (; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(text[i]))
            {
                copy ??= text.ToCharArray();
                copy[i] = '\uFFFD';
            }
        }

        return copy is null ? text : new string(copy);
    }

    private int? ResolveSpecial(string? name, string field, string? settingsPath, int? fallbackId, string fallbackField, string? fallbackSource)
    {
        if (name is not null)
        {
            return TokenToId(name) ?? throw new InvalidDataException(
                $"Invalid configuration file '{settingsPath}': '{field}' = '{Granite.Core.Diagnostics.ErrorText.Excerpt(name)}' is not a token of the tokenizer.");
        }

        if (fallbackId is int id)
        {
            if (IdToToken(id) is null)
            {
                throw new InvalidDataException($"Invalid configuration file '{fallbackSource}': '{fallbackField}' = {id} is not a token id of the tokenizer.");
            }

            return id;
        }

        return null;
    }
}
