using System.Text.Json.Nodes;
using SkiaSharp;

namespace Granite.Benchmarks.Experts;

/// <summary>Two panels: decode speed relative to offload off, and private memory, against the expert budget.</summary>
internal static class Plot
{
    public static void Write(JsonArray all, string path)
    {
        var rows = Summary.Rows(all);
        const int W = 1520, H = 560, panelW = 640, top = 60, bottom = 480, left0 = 80;
        using var surface = SKSurface.Create(new SKImageInfo(W, H));
        var c = surface.Canvas;
        c.Clear(SKColors.White);
        var fontFile = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
        using var typeface = File.Exists(fontFile) ? SKTypeface.FromFile(fontFile) : SKTypeface.Default;
        using var font = new SKFont(typeface, 16);
        using var small = new SKFont(typeface, 13);
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var axis = new SKPaint { Color = SKColors.Black, StrokeWidth = 1.5f, IsAntialias = true, Style = SKPaintStyle.Stroke };
        using var grid = new SKPaint { Color = new SKColor(220, 220, 220), StrokeWidth = 1, Style = SKPaintStyle.Stroke };
        string[] budgets = { "12.5%", "25%", "50%", "100%", "off" };
        var series = rows.Where(r => r.Budget is not "off" and not "100%").Select(r => (r.Routing, r.Policy)).Distinct().ToList();
        SKColor[] colors = { new(31, 119, 180), new(255, 127, 14), new(44, 160, 44), new(214, 39, 40) };

        void Panel(int x0, string title, string yLabel, Func<Summary.Row, double> value, double yMax, double? target)
        {
            int x1 = x0 + panelW - 100;
            float X(int i) => x0 + 30 + i * (x1 - x0 - 60) / (float)(budgets.Length - 1);
            float Y(double v) => (float)(bottom - v / yMax * (bottom - top));
            c.DrawText(title, x0, top - 25, SKTextAlign.Left, font, text);
            for (int k = 0; k <= 5; k++)
            {
                double v = yMax * k / 5;
                c.DrawLine(x0, Y(v), x1, Y(v), grid);
                c.DrawText(v.ToString(yMax <= 2 ? "0.0" : "0", System.Globalization.CultureInfo.InvariantCulture), x0 - 8, Y(v) + 5, SKTextAlign.Right, small, text);
            }
            c.DrawLine(x0, top, x0, bottom, axis);
            c.DrawLine(x0, bottom, x1, bottom, axis);
            for (int i = 0; i < budgets.Length; i++) c.DrawText(budgets[i], X(i), bottom + 20, SKTextAlign.Center, small, text);
            c.DrawText("expert budget (share of expert bytes resident)", (x0 + x1) / 2f, bottom + 45, SKTextAlign.Center, small, text);
            c.Save();
            c.RotateDegrees(-90, x0 - 50, (top + bottom) / 2f);
            c.DrawText(yLabel, x0 - 50, (top + bottom) / 2f, SKTextAlign.Center, small, text);
            c.Restore();
            if (target is { } t)
            {
                using var dash = new SKPaint { Color = SKColors.Gray, StrokeWidth = 1.5f, Style = SKPaintStyle.Stroke, PathEffect = SKPathEffect.CreateDash(new[] { 6f, 4f }, 0) };
                c.DrawLine(x0, Y(t), x1, Y(t), dash);
                c.DrawText("target at 25 %: 0.5×", x1 - 150, Y(t) - 6, SKTextAlign.Left, small, text);
            }
            for (int s = 0; s < series.Count; s++)
            {
                using var pen = new SKPaint { Color = colors[s % colors.Length], StrokeWidth = 2.5f, IsAntialias = true, Style = SKPaintStyle.Stroke };
                using var dot = new SKPaint { Color = colors[s % colors.Length], IsAntialias = true };
                SKPoint? prev = null;
                for (int i = 0; i < budgets.Length; i++)
                {
                    var r = rows.FirstOrDefault(q => q.Routing == series[s].Routing && q.Budget == budgets[i] && (q.Policy == series[s].Policy || budgets[i] is "off" or "100%"));
                    if (r is null) continue;
                    var pt = new SKPoint(X(i), Y(value(r)));
                    if (prev is { } pp) c.DrawLine(pp, pt, pen);
                    c.DrawCircle(pt, 4, dot);
                    prev = pt;
                }
                c.DrawLine(x1 + 10, top + 10 + s * 22, x1 + 35, top + 10 + s * 22, pen);
                c.DrawText($"{series[s].Routing} {series[s].Policy}", x1 + 40, top + 15 + s * 22, SKTextAlign.Left, small, text);
            }
        }

        double maxRatio = Math.Max(1.5, Math.Ceiling(rows.Max(r => r.Ratio) * 2) / 2);
        Panel(left0, "Decode speed relative to offload off", "decode tok/s ÷ offload off", r => r.Ratio, maxRatio, 0.5);
        double maxMem = Math.Ceiling(rows.Max(r => r.PrivateMiB) / 500) * 500;
        Panel(left0 + 700, "Private memory (RssAnon)", "MiB", r => r.PrivateMiB, maxMem, null);
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 90);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var f = File.Create(path);
        data.SaveTo(f);
    }
}
