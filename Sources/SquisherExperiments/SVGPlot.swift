import Foundation

/// Minimal SVG charts written by Squisher itself (no plotting dependency): scatter plots on log
/// axes, line charts with error bars, and heat maps. Output is a standalone SVG 1.1 document.
public enum SVGPlot {
    /// A series of points for ``scatter(title:xLabel:yLabel:series:logAxes:)`` or ``lines(title:xLabel:yLabel:xTicks:series:)``.
    public struct Series: Sendable {
        public var label: String
        public var points: [(x: Double, y: Double)]
        /// Half-widths of error bars (line charts), one per point, or empty.
        public var errors: [Double]
        public init(label: String, points: [(x: Double, y: Double)], errors: [Double] = []) {
            self.label = label
            self.points = points
            self.errors = errors
        }
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    static let width = 660.0, height = 420.0
    static let left = 80.0, right = 230.0, top = 40.0, bottom = 55.0

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func header(_ title: String) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2 - right / 2 + left / 2)" y="22" text-anchor="middle" font-size="14" font-weight="bold">\(escape(title))</text>

        """
    }

    /// Nice tick values between `low` and `high`.
    static func ticks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
        guard high > low else { return [low] }
        let raw = (high - low) / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var values: [Double] = []
        var v = ceil(low / step) * step
        while v <= high + step * 1e-9 { values.append(v); v += step }
        return values
    }

    static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1e4 || abs(v) < 1e-2 { return String(format: "%.0e", v) }
        return String(format: "%g", (v * 1000).rounded() / 1000)
    }

    static func axes(xLabel: String, yLabel: String, xTicks: [(Double, String)], yTicks: [(Double, String)]) -> String {
        let plotBottom = height - bottom, plotRight = width - right
        var svg = "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotRight - left)\" height=\"\(plotBottom - top)\" fill=\"none\" stroke=\"#333\"/>\n"
        for (x, text) in xTicks {
            svg += "<line x1=\"\(x)\" y1=\"\(plotBottom)\" x2=\"\(x)\" y2=\"\(plotBottom + 5)\" stroke=\"#333\"/><text x=\"\(x)\" y=\"\(plotBottom + 18)\" text-anchor=\"middle\">\(escape(text))</text>\n"
        }
        for (y, text) in yTicks {
            svg += "<line x1=\"\(left - 5)\" y1=\"\(y)\" x2=\"\(left)\" y2=\"\(y)\" stroke=\"#333\"/><line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(plotRight)\" y2=\"\(y)\" stroke=\"#eee\"/><text x=\"\(left - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">\(escape(text))</text>\n"
        }
        svg += "<text x=\"\((left + plotRight) / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        svg += "<text transform=\"translate(18 \((top + plotBottom) / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        return svg
    }

    static func legend(_ labels: [String]) -> String {
        var svg = ""
        for (i, text) in labels.enumerated() {
            let y = top + 10 + Double(i) * 18
            svg += "<rect x=\"\(width - right + 12)\" y=\"\(y - 9)\" width=\"12\" height=\"12\" fill=\"\(palette[i % palette.count])\"/><text x=\"\(width - right + 30)\" y=\"\(y + 1)\">\(escape(text))</text>\n"
        }
        return svg
    }

    /// A scatter plot; with `logAxes`, non-positive values are dropped and axes are log10.
    public static func scatter(title: String, xLabel: String, yLabel: String, series: [Series], logAxes: Bool = true, diagonal: Bool = true) -> String {
        let transform: (Double) -> Double = logAxes ? { log10($0) } : { $0 }
        let points = series.map { $0.points.filter { !logAxes || ($0.x > 0 && $0.y > 0) }.map { (transform($0.x), transform($0.y)) } }
        let all = points.flatMap { $0 }
        guard !all.isEmpty else { return header(title) + "<text x=\"100\" y=\"100\">no positive values to plot</text>\n</svg>\n" }
        var low = min(all.map(\.0).min()!, all.map(\.1).min()!), high = max(all.map(\.0).max()!, all.map(\.1).max()!)
        if high - low < 1e-9 { low -= 1; high += 1 }
        let plotRight = width - right, plotBottom = height - bottom
        func px(_ v: Double) -> Double { left + (v - low) / (high - low) * (plotRight - left) }
        func py(_ v: Double) -> Double { plotBottom - (v - low) / (high - low) * (plotBottom - top) }
        let decades = Array(Int(ceil(low))...max(Int(ceil(low)), Int(floor(high))))
        let every = max(1, (decades.count + 6) / 7)
        let tickValues = logAxes ? decades.filter { ($0 - decades[0]) % every == 0 }.map(Double.init) : ticks(low, high)
        let tickLabels = tickValues.map { logAxes ? "1e\(Int($0))" : label($0) }
        var svg = header(title) + axes(xLabel: xLabel, yLabel: yLabel, xTicks: zip(tickValues.map(px), tickLabels).map { ($0, $1) }, yTicks: zip(tickValues.map(py), tickLabels).map { ($0, $1) })
        if diagonal { svg += "<line x1=\"\(px(low))\" y1=\"\(py(low))\" x2=\"\(px(high))\" y2=\"\(py(high))\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n" }
        for (i, pts) in points.enumerated() {
            let color = palette[i % palette.count]
            for (x, y) in pts { svg += "<circle cx=\"\(String(format: "%.1f", px(x)))\" cy=\"\(String(format: "%.1f", py(y)))\" r=\"1.6\" fill=\"\(color)\" fill-opacity=\"0.5\"/>\n" }
        }
        return svg + legend(series.map(\.label)) + "</svg>\n"
    }

    /// A line chart with markers and optional error bars; `xTicks` label the x positions.
    public static func lines(title: String, xLabel: String, yLabel: String, xTicks: [(Double, String)], series: [Series]) -> String {
        let xs = series.flatMap { $0.points.map(\.x) } + xTicks.map(\.0)
        let ys = series.flatMap { s in s.points.enumerated().flatMap { i, p in [p.y - (s.errors.count > i ? s.errors[i] : 0), p.y + (s.errors.count > i ? s.errors[i] : 0)] } }
        guard let xMin = xs.min(), let xMax = xs.max(), var yMin = ys.min(), var yMax = ys.max() else { return header(title) + "</svg>\n" }
        if yMax - yMin < 1e-9 { yMin -= 1; yMax += 1 }
        let pad = (yMax - yMin) * 0.05
        yMin -= pad; yMax += pad
        let plotRight = width - right, plotBottom = height - bottom
        func px(_ v: Double) -> Double { xMax > xMin ? left + 20 + (v - xMin) / (xMax - xMin) * (plotRight - left - 40) : (left + plotRight) / 2 }
        func py(_ v: Double) -> Double { plotBottom - (v - yMin) / (yMax - yMin) * (plotBottom - top) }
        let yTicks = ticks(yMin, yMax).map { (py($0), label($0)) }
        var svg = header(title) + axes(xLabel: xLabel, yLabel: yLabel, xTicks: xTicks.map { (px($0.0), $0.1) }, yTicks: yTicks)
        for (i, s) in series.enumerated() {
            let color = palette[i % palette.count]
            let path = s.points.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
            svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            for (j, p) in s.points.enumerated() {
                if s.errors.count > j, s.errors[j] > 0 {
                    svg += "<line x1=\"\(px(p.x))\" y1=\"\(py(p.y - s.errors[j]))\" x2=\"\(px(p.x))\" y2=\"\(py(p.y + s.errors[j]))\" stroke=\"\(color)\"/>\n"
                }
                svg += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"3\" fill=\"\(color)\"/>\n"
            }
        }
        return svg + legend(series.map(\.label)) + "</svg>\n"
    }

    /// A heat map of a matrix with row/column labels (white = low, dark blue = high), values printed.
    public static func heatMap(title: String, labels: [String], matrix: [[Double]]) -> String {
        let n = labels.count
        guard n > 0 else { return header(title) + "</svg>\n" }
        let values = matrix.flatMap { $0 }
        let low = values.min() ?? 0, high = values.max() ?? 1
        let cell = min(40.0, (min(width, height) - 180) / Double(n))
        let x0 = 120.0, y0 = 50.0
        var svg = header(title)
        for i in 0..<n {
            svg += "<text x=\"\(x0 - 6)\" y=\"\(y0 + (Double(i) + 0.6) * cell)\" text-anchor=\"end\" font-size=\"10\">\(escape(labels[i]))</text>\n"
            svg += "<text transform=\"translate(\(x0 + (Double(i) + 0.6) * cell) \(y0 + Double(n) * cell + 6)) rotate(60)\" font-size=\"10\">\(escape(labels[i]))</text>\n"
            for j in 0..<n {
                let t = high > low ? (matrix[i][j] - low) / (high - low) : 0
                let r = Int(255 - t * 225), g = Int(255 - t * 180), b = Int(255 - t * 80)
                svg += "<rect x=\"\(x0 + Double(j) * cell)\" y=\"\(y0 + Double(i) * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"rgb(\(r),\(g),\(b))\"/>\n"
                if cell >= 24 {
                    svg += "<text x=\"\(x0 + (Double(j) + 0.5) * cell)\" y=\"\(y0 + (Double(i) + 0.6) * cell)\" text-anchor=\"middle\" font-size=\"8\" fill=\"\(t > 0.6 ? "white" : "black")\">\(String(format: "%.2f", matrix[i][j]))</text>\n"
                }
            }
        }
        return svg + "</svg>\n"
    }
}
