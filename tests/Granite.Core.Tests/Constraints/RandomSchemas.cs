using System.Text.Json.Nodes;

namespace Granite.Core.Tests.Constraints;

/// <summary>Random JSON Schemas from the supported subset, bounded so a random model finishes them in a few hundred tokens.</summary>
internal static class RandomSchemas
{
    private static readonly string[] Names = { "a", "name", "city", "ü", "we\"ird", "k e y", "日本", "n1", "value", "x_y" };

    public static JsonObject Generate(Random rng)
    {
        var defs = new JsonObject();
        var root = Node(rng, 0, defs);
        if (defs.Count > 0)
        {
            // Reference the shared definition from the root sometimes.
            root = new JsonObject { ["$defs"] = defs, ["anyOf"] = new JsonArray(root, new JsonObject { ["$ref"] = "#/$defs/d0" }) };
        }
        return root;
    }

    private static JsonObject Node(Random rng, int depth, JsonObject defs)
    {
        int kind = depth >= 3 ? rng.Next(3, 9) : rng.Next(0, 11);
        switch (kind)
        {
            case 0:
            case 1:
            case 2:
            {
                var props = new JsonObject();
                var required = new JsonArray();
                foreach (var n in Names.OrderBy(_ => rng.Next()).Take(rng.Next(0, 4)))
                {
                    props[n] = Node(rng, depth + 1, defs);
                    if (rng.Next(2) == 0) required.Add(n);
                }
                var o = new JsonObject { ["type"] = "object", ["properties"] = props, ["required"] = required, ["description"] = "ignored" };
                // Extra properties only when nothing is required: a random model would rarely spell a required name
                // among free keys, and would never stop.
                o["additionalProperties"] = required.Count == 0 && rng.Next(3) == 0 ? new JsonObject { ["type"] = "integer", ["minimum"] = 0, ["maximum"] = 9 } : false;
                return o;
            }
            case 3:
                return new JsonObject { ["type"] = "string", ["minLength"] = rng.Next(0, 3), ["maxLength"] = rng.Next(3, 8) };
            case 4:
            {
                var n = new JsonObject { ["type"] = rng.Next(2) == 0 ? "integer" : "number" };
                int lo = rng.Next(-50, 50);
                n[rng.Next(2) == 0 ? "minimum" : "exclusiveMinimum"] = lo;
                n[rng.Next(2) == 0 ? "maximum" : "exclusiveMaximum"] = lo + rng.Next(2, 500);
                return n;
            }
            case 5:
                return new JsonObject { ["enum"] = new JsonArray("red", "green", 3, null, "é\"q") };
            case 6:
                return new JsonObject { ["type"] = new JsonArray("boolean", "null") };
            case 7:
                return new JsonObject { ["const"] = rng.Next(2) == 0 ? "fixed" : JsonValue.Create(42) };
            case 8:
                return new JsonObject { ["type"] = new JsonArray("string", "null"), ["maxLength"] = 4 };
            case 9:
                return new JsonObject { ["type"] = "array", ["items"] = Node(rng, depth + 1, defs), ["minItems"] = rng.Next(0, 2), ["maxItems"] = rng.Next(2, 4) };
            default:
                if (!defs.ContainsKey("d0")) defs["d0"] = new JsonObject { ["type"] = "integer", ["minimum"] = -5, ["maximum"] = 5 };
                return new JsonObject { ["anyOf"] = new JsonArray(new JsonObject { ["$ref"] = "#/$defs/d0" }, Node(rng, depth + 1, defs)) };
        }
    }
}
