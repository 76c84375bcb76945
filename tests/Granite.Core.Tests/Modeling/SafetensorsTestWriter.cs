using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Granite.Core.Tests.Modeling;

/// <summary>Copies a fixture folder and rewrites its single <c>model.safetensors</c> (drop / add tensors) for load-error tests.</summary>
internal static class SafetensorsTestWriter
{
    public sealed record Entry(string Name, string DType, long[] Shape, byte[] Data);

    public static string CopyFixture(string fixture)
    {
        var src = Golden.FixtureDir(fixture);
        var dst = Path.Combine(Path.GetTempPath(), $"granite-model-test-{fixture}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dst);
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
        return dst;
    }

    public static List<Entry> Read(string file)
    {
        var bytes = File.ReadAllBytes(file);
        long n = BitConverter.ToInt64(bytes, 0);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n))!.AsObject();
        var list = new List<Entry>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__") continue;
            var offs = node!["data_offsets"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
            var data = bytes.AsSpan((int)(8 + n + offs[0]), (int)(offs[1] - offs[0])).ToArray();
            list.Add(new Entry(name, node["dtype"]!.GetValue<string>(), node["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray(), data));
        }
        return list;
    }

    public static void Write(string file, IEnumerable<Entry> entries)
    {
        var header = new JsonObject();
        long offset = 0;
        var list = entries.ToList();
        foreach (var e in list)
        {
            header[e.Name] = new JsonObject
            {
                ["dtype"] = e.DType,
                ["shape"] = new JsonArray(e.Shape.Select(s => (JsonNode)JsonValue.Create(s)).ToArray()),
                ["data_offsets"] = new JsonArray(JsonValue.Create(offset), JsonValue.Create(offset + e.Data.Length)),
            };
            offset += e.Data.Length;
        }
        var json = header.ToJsonString();
        while ((json.Length + 8) % 8 != 0) json += " ";
        var hb = Encoding.UTF8.GetBytes(json);
        using var fs = File.Create(file);
        fs.Write(BitConverter.GetBytes((long)hb.Length));
        fs.Write(hb);
        foreach (var e in list) fs.Write(e.Data);
    }

    public static void Delete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
