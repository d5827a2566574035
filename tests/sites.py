"""A site shaped like kemenpora.go.id, served by the local feed server from tests/fixtures/sites."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "sites" / "kemenpora"

# The stories of berita.html (page 1, newest first) and berita_2.html, by id: (path, title, date).
PAGE_1 = {
    12345: ("/detail/12345/menpora-dito-buka-kejurnas-pencak-silat",
            "Menpora Dito Buka Kejurnas Pencak Silat Antarpelajar 2025", "2025-12-01T00:00:00+07:00"),
    12344: ("/detail/12344/deputi-pemberdayaan-pemuda-gelar-pelatihan-kewirausahaan",
            "Deputi Pemberdayaan Pemuda Gelar Pelatihan Kewirausahaan & Kepemimpinan", "2025-11-30T00:00:00+07:00"),
    12343: ("/detail/12343/timnas-u-17-berangkat-ke-qatar",
            "Timnas U-17 Berangkat ke Qatar, Kemenpora Beri Dukungan Penuh", "2025-11-29T00:00:00+07:00"),
    12342: ("/detail/12342/hari-guru-nasional-di-lingkungan-kemenpora",
            "Peringatan Hari Guru Nasional di Lingkungan Kemenpora", "2025-11-28T00:00:00+07:00"),
}
PAGE_2 = {
    12341: ("/detail/12341/sosialisasi-anti-doping", "Sosialisasi Anti Doping bagi Atlet Pelajar",
            "2025-11-27T00:00:00+07:00"),
    12340: ("/detail/12340/pelantikan-pengurus-kontingen-sea-games", "Pelantikan Pengurus Kontingen SEA Games",
            "2025-11-26T00:00:00+07:00"),
}
FOREIGN_IDS = (11111, 11112)
"""Stories in blocks outside the main listing (sidebar, popular strip): never read, never posted."""
NEW_STORY = (12346, "/detail/12346/kemenpora-luncurkan-program-desa-olahraga",
             "Kemenpora Luncurkan Program Desa Olahraga", "Selasa, 2 Des 2025")
"""Published later by `KemenporaSite.publish_new_story`; its page has a precise time (14:30 WIB)."""

HTML = "text/html; charset=utf-8"


class KemenporaSite:
    """Serves /berita, /berita/2 and story pages at `prefix` on a FeedServer."""

    def __init__(self, server, prefix: str = ""):
        self.server, self.prefix = server, prefix
        self.listing_url = server.url(prefix + "/berita")
        server.add(prefix + "/berita", self.page("berita.html"), content_type=HTML)
        server.add(prefix + "/berita/2", self.page("berita_2.html"), content_type=HTML)
        server.add(prefix + PAGE_1[12345][0], self.page("detail_12345.html"), content_type=HTML)
        server.add(prefix + NEW_STORY[1], self.page("detail_12346.html"), content_type=HTML)

    def page(self, name: str) -> str:
        return (FIXTURES / name).read_text(encoding="utf-8").replace("{BASE}", self.server.base_url + self.prefix)

    def url(self, path: str) -> str:
        return self.server.url(self.prefix + path)

    def show(self, name: str) -> None:
        """The listing now serves another fixture (a redesign, ...)."""
        self.server.edit(self.prefix + "/berita", body=self.page(name))

    def publish_new_story(self, date: str | None = None, summary: str | None = None, image: str | None = None) -> None:
        """A new story appears at the top of the main listing (its row as NEW_STORY says, or with
        this date, and a teaser and thumbnail when given)."""
        story_id, path, title, listed = NEW_STORY
        picture = f'<div class="newsrow__img"><img src="{image}"></div>' if image else ""
        teaser = f'<div class="newsrow__summary"><p>{summary}</p></div>' if summary else ""
        row = (f'<div class="newsrow__row">{picture}<div class="newsrow__text"><div class="catedate">'
               f'<span class="date">{date or listed}</span></div><h2 class="newsrow__title">'
               f'<a href="{self.url(path)}">{title}</a></h2>{teaser}</div></div>')
        html = self.page("berita.html").replace('<div class="newsrow">', '<div class="newsrow">' + row, 1)
        self.server.edit(self.prefix + "/berita", body=html)

    def story_requests(self) -> list[str]:
        return [r.path for r in self.server.request_log if r.path.startswith(self.prefix + "/detail/")]


# --- A government site with no feed but sitemaps ----------------------------------------------------

SITEMAP_NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
NEWS_NS = 'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"'
IMAGE_NS = 'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'
XML = "application/xml; charset=utf-8"


def news_sitemap(stories: list[tuple[str, str, str]]) -> str:
    """A Google News sitemap of (loc, title, publication_date)."""
    urls = "".join(
        f"<url><loc>{loc}</loc><news:news><news:publication><news:name>Kementerian</news:name>"
        f"<news:language>id</news:language></news:publication><news:publication_date>{date}"
        f"</news:publication_date><news:title>{title}</news:title></news:news></url>"
        for loc, title, date in stories)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {SITEMAP_NS} {NEWS_NS}>{urls}</urlset>'


def urlset(entries: list[tuple[str, str | None]], image: str | None = None) -> str:
    """A plain sitemap of (loc, lastmod or None); `image` adds one image:loc to the first entry."""
    urls = []
    for n, (loc, lastmod) in enumerate(entries):
        extra = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
        if image and n == 0:
            extra += f"<image:image><image:loc>{image}</image:loc></image:image>"
        urls.append(f"<url><loc>{loc}</loc>{extra}<changefreq>daily</changefreq></url>")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {SITEMAP_NS} {IMAGE_NS}>{"".join(urls)}</urlset>'


def sitemap_index(children: list[tuple[str, str | None]]) -> str:
    entries = "".join(f"<sitemap><loc>{loc}</loc>" + (f"<lastmod>{mod}</lastmod>" if mod else "") + "</sitemap>"
                      for loc, mod in children)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex {SITEMAP_NS}>{entries}</sitemapindex>'


def story_page(title: str, summary: str, image: str, published: str) -> str:
    return (f'<!DOCTYPE html><html lang="id"><head><meta charset="utf-8"><title>{title} | Kementerian</title>'
            f'<meta property="og:title" content="{title}"><meta property="og:description" content="{summary}">'
            f'<meta property="og:image" content="{image}">'
            f'<meta property="article:published_time" content="{published}"></head>'
            f'<body><h1>{title}</h1><p>{summary}</p></body></html>')


class SitemapSite:
    """A ministry site without a feed: a home page (no feed link), robots.txt naming its news
    sitemap, /sitemap.xml (an index of monthly sitemaps), and story pages under /berita/."""

    def __init__(self, server):
        self.server = server
        self.stories: list[tuple[str, str, str]] = []  # (path, title, publication date)
        server.add("/", "<!DOCTYPE html><html><head><title>Beranda</title></head><body><h1>Beranda</h1></body></html>",
                   content_type=HTML)
        server.add("/robots.txt", f"User-agent: *\nDisallow: /admin\nSitemap: {server.url('/sitemap.xml')}\n"
                   f"Sitemap: {server.url('/news-sitemap.xml')}\n", content_type="text/plain")
        for n in (1, 2, 3):
            self.publish(f"/berita/{n}/berita-ke-{n}", f"Berita ke-{n} dari kementerian", f"2025-12-0{n}T08:00:00+07:00")

    def url(self, path: str) -> str:
        return self.server.url(path)

    def publish(self, path: str, title: str, date: str) -> None:
        """A new story: its page, and its entry in the news sitemap and the newest monthly one."""
        self.stories.insert(0, (path, title, date))
        self.server.add(path, story_page(title, f"Ringkasan {title}.", self.url(f"/img{path}.jpg"), date),
                        content_type=HTML)
        self.server.add("/news-sitemap.xml", news_sitemap([(self.url(p), t, d) for p, t, d in self.stories]),
                        content_type=XML)
        self.server.add("/sitemap-2025-12.xml", urlset([(self.url(p), d[:10]) for p, _, d in self.stories]),
                        content_type=XML)
        self.server.add("/sitemap-2025-11.xml", urlset([(self.url("/berita/0/lama"), "2025-11-30")]),
                        content_type=XML)
        self.server.add("/sitemap-pages.xml", urlset([(self.url("/tentang"), None)]), content_type=XML)
        self.server.add("/sitemap.xml", sitemap_index([
            (self.url("/sitemap-pages.xml"), None), (self.url("/sitemap-2025-11.xml"), "2025-11-30"),
            (self.url("/sitemap-2025-12.xml"), date)]), content_type=XML)

    def page_requests(self) -> list[str]:
        return [r.path for r in self.server.request_log if r.path.startswith("/berita/")]
