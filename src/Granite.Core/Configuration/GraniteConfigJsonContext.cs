using System.Text.Json;
using System.Text.Json.Serialization;

namespace Granite.Core.Configuration;

/// <summary>
/// Source-generated System.Text.Json reading of <c>config.json</c>: the top-level object as field name → raw value
/// (a repeated key is an error; comments and trailing commas are accepted, as Hugging Face's loader does). The values
/// are interpreted, with messages naming the field, by <see cref="GraniteConfigReader"/>.
/// </summary>
[JsonSourceGenerationOptions(AllowTrailingCommas = true, ReadCommentHandling = JsonCommentHandling.Skip, AllowDuplicateProperties = false)]
[JsonSerializable(typeof(Dictionary<string, JsonElement>))]
internal sealed partial class GraniteConfigJsonContext : JsonSerializerContext
{
}
