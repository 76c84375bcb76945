using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Granite.Benchmarks.Experts;

/// <summary>Aggregates child results: medians over repetitions, speed ratios to offload off of the same repetition.</summary>
internal static class Summary
{
    internal sealed record Row(string Routing, string Budget, string Policy, double TokensPerS, double Ratio, double RssMiB, double PrivateMiB, double ResidentExpertMiB, double? HitRate, double? Top25, double? FetchedMiBPerToken, double? FetchMsPerToken, double MsPerToken);

    public static List<Row> Rows(JsonArray all)
    {
        var items = all.Select(n => n!.AsObject()).ToList();
        var rows = new List<Row>();
        foreach (var g in items.GroupBy(n => (M: (string)n["model"]!, B: (string)n["budget"]!, P: (string)n["policy"]!)))
        {
            var ratios = g.Select(n =>
            {
                var baseline = items.First(b => (int)b["rep"]! == (int)n["rep"]! && (string)b["model"]! == g.Key.M && (string)b["budget"]! == "off");
                return (double)n["tokens_per_s"]! / (double)baseline["tokens_per_s"]!;
            }).ToList();
            rows.Add(new Row(g.Key.M, g.Key.B, g.Key.P,
                Median(g.Select(n => (double)n["tokens_per_s"]!)), Median(ratios),
                Median(g.Select(n => (double)n["rss_bytes"]! / 1048576)), Median(g.Select(n => (double)n["private_bytes"]! / 1048576)),
                Median(g.Select(n => n["resident_expert_bytes"] is { } x ? (double)x / 1048576 : double.NaN)),
                g.First()["hit_rate"] is null ? null : Median(g.Select(n => (double)n["hit_rate"]!)),
                g.First()["popularity_top25"] is null ? null : (double)g.First()["popularity_top25"]!,
                g.First()["fetched_bytes_per_token"] is null ? null : Median(g.Select(n => (double)n["fetched_bytes_per_token"]! / 1048576)),
                g.First()["fetch_ms_per_token"] is null ? null : Median(g.Select(n => (double)n["fetch_ms_per_token"]!)),
                Median(g.Select(n => 1000 / (double)n["tokens_per_s"]!))));
        }
        return rows.OrderBy(r => r.Routing, StringComparer.Ordinal).ThenBy(r => BudgetOrder(r.Budget)).ThenBy(r => r.Policy, StringComparer.Ordinal).ToList();
    }

    public static double BudgetOrder(string b) => b == "off" ? 1000 : double.Parse(b.TrimEnd('%'), CultureInfo.InvariantCulture);

    private static double Median(IEnumerable<double> xs)
    {
        var a = xs.Order().ToArray();
        return a.Length == 0 ? double.NaN : a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    public static string Markdown(JsonArray all)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| routing | budget | policy | decode tok/s | × offload off | hit rate | fetched MiB/token | fetch ms/token | resident experts MiB | RSS MiB | private (RssAnon) MiB |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in Rows(all))
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Routing} | {r.Budget} | {r.Policy} | {r.TokensPerS:F2} | {r.Ratio:F2} | {(r.HitRate is { } h ? h.ToString("P1", CultureInfo.InvariantCulture) : "–")} | {(r.FetchedMiBPerToken is { } fb ? fb.ToString("F1", CultureInfo.InvariantCulture) : "–")} | {(r.FetchMsPerToken is { } fm ? fm.ToString("F1", CultureInfo.InvariantCulture) : "–")} | {(double.IsNaN(r.ResidentExpertMiB) ? "all (params)" : r.ResidentExpertMiB.ToString("F0", CultureInfo.InvariantCulture))} | {r.RssMiB:F0} | {r.PrivateMiB:F0} |"));
        return sb.ToString();
    }
}
